"""One round of the loop: train, export, evaluate, check stopping, report composition, select.

:func:`run_round` works in ``<workspace>/rounds/NNN/``::

    model.onnx             the round's model (built-in trainer, or a copy of --model)
    metrics.json           evaluation-set metrics
    stop_predictions.npy   predicted class names on the stop set (stabilizing-predictions rule: compared with the
                           latest earlier model's where this round trained on more labels than that one)
    exclude.parquet        ids the selection skipped (labeled + pending + evaluation set)
    batch/                 the engine's batch manifest (batch.parquet + manifest.json); none once the budget is spent
    round.json             the round's record; written last, it marks the round complete

A workspace with no training labels yet gets round 000, the *seed* round: no model, the
initial set chosen by the workspace's ``initial_method`` (random, kmeans, hint).

Every step writes atomically and checks for its own output first, so a round interrupted at
any point is finished by running it again, without a second selection or duplicate state.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import io
import json
import logging
import pathlib
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from alscale.config import check_int, check_path
from alscale.exceptions import AlscaleError, ConfigError, LabelError, ModelError, PoolExhaustedError, WorkspaceError, first_line, short_repr
from alscale.loop import _pool
from alscale.loop._io import atomic_write_bytes, atomic_write_json, atomic_write_parquet, file_lock, read_json
from alscale.loop.composition import composition_report
from alscale.loop.idbatch import id_batch_run_id, write_id_batch
from alscale.loop.labellog import id_arrow_type
from alscale.loop.metrics import evaluate
from alscale.loop.seedset import INITIAL_METHODS, seed_by_hint, seed_kmeans, seed_random
from alscale.loop.settings import check_loop_strategy, check_model_strategy
from alscale.loop.stopping import check_stopping
from alscale.loop.train import check_model_classes, export_model, model_classes, predict_onnx, train_model
from alscale.loop.workspace import CONFIG_NAME, Workspace

__all__ = ["load_history", "run_round", "select_batch"]

logger = logging.getLogger(__name__)
ROUND_FILE = "round.json"
STOP_PREDICTIONS = "stop_predictions.npy"
#: Held (``fcntl.flock``) by the one round running in a workspace.
ROUND_LOCK = ".round.lock"


def _round_dir(ws: Workspace, number: int) -> pathlib.Path:
    return ws.rounds_dir / f"{number:03d}"


def load_history(ws: Workspace | str | pathlib.Path) -> list[dict]:
    """The records (``round.json``) of the completed rounds, oldest first.

    Parameters
    ----------
    ws : Workspace or path

    Returns
    -------
    list of dict
        One record per completed round, as :func:`run_round` returned it.

    Raises
    ------
    WorkspaceError
        There is no workspace at the path given, or a round's ``round.json`` is not a round
        record (damaged or edited by hand).
    """
    ws = ws if isinstance(ws, Workspace) else Workspace.open(check_path("ws", ws))
    out = []
    for d in sorted(ws.rounds_dir.glob("[0-9][0-9][0-9]")):
        if (d / ROUND_FILE).is_file():
            out.append(_read_round_record(d))
    return out


def _redo_hint(out_dir: pathlib.Path) -> str:
    return f"restore it from a backup, or delete {str(out_dir)!r} (and any later round) to run round {out_dir.name} again"


def _read_round_record(out_dir: pathlib.Path) -> dict:
    """``out_dir/round.json``, refused unless it is a round record: an object with an integer round and labels."""
    path = out_dir / ROUND_FILE
    try:
        record = read_json(path)
    except (ValueError, OSError) as exc:  # UnicodeDecodeError is a ValueError
        raise WorkspaceError(f"Expected the record of round {out_dir.name} in {str(path)!r}. Got unreadable JSON "
                             f"({first_line(exc)}); {_redo_hint(out_dir)}.") from None
    if not (isinstance(record, dict) and all(isinstance(record.get(key), int) and not isinstance(record.get(key), bool)
                                             for key in ("round", "labels"))):
        raise WorkspaceError(f"Expected the record of round {out_dir.name} in {str(path)!r} to be an object with an integer "
                             f"round and labels. Got {short_repr(record, 80)}; {_redo_hint(out_dir)}.")
    return record


def _next_round(ws: Workspace) -> int:
    done = [int(d.name) for d in ws.rounds_dir.glob("[0-9][0-9][0-9]") if (d / ROUND_FILE).is_file()]
    return max(done) + 1 if done else 0


def _feature_columns(ws: Workspace) -> list[str]:
    cols = ws.settings.get("features")
    if cols:
        return list(cols)
    skip = [c for c in [ws.config.get("label_column"), ws.settings.get("hint_column"), *ws.config.get("group_columns", [])] if c]
    schema = _pool.pool_dataset(ws.config["pool"]).schema
    return _pool.feature_columns(schema, id_column=ws.config["id_column"], exclude=skip)


def _write_ids(path: pathlib.Path, ids: np.ndarray, id_type: str) -> pathlib.Path:
    return atomic_write_parquet(path, pa.table({"id": pa.array(ids.tolist() if id_type != "int64" else ids, id_arrow_type(id_type))}))


def select_batch(pool, model, *, out_dir: pathlib.Path, exclude_ids: np.ndarray, id_type: str, strategy: str, k: int,
                 seed: int, id_column: str = "id", features=None, actors: int | None = None, labeled_ids=None):
    """Select with the engine, skipping ``exclude_ids``; reuse the batch if it was written already.

    Parameters
    ----------
    pool : str or list
    model : str or path
    out_dir : path
        The round folder; ``exclude.parquet`` and ``batch/`` go there.
    exclude_ids : ndarray of shape (m,)
    id_type : {"int64", "string"}
    strategy : str
    k : int

    Returns
    -------
    alscale.manifest.Manifest
    """
    from alscale.api import select
    from alscale.manifest import Manifest

    batch_dir = out_dir / "batch"
    if (batch_dir / "manifest.json").is_file():
        return Manifest.read(batch_dir)
    exclude = _write_ids(out_dir / "exclude.parquet", exclude_ids, id_type)
    labeled = [] if labeled_ids is None else [_write_ids(out_dir / "labeled.parquet", np.asarray(labeled_ids), id_type)]
    return select(pool, str(model), strategy=strategy, k=int(k), out=batch_dir, exclude=[exclude], labeled=labeled,
                  seed=int(seed), id_column=id_column, features=features, actors=actors, force=True)


def _evaluation_rows(ws: Workspace) -> tuple[np.ndarray, list[str]]:
    """Evaluation-set ids that have a label, and their labels."""
    eval_ids = ws.evaluation_ids()
    label_column = ws.config.get("label_column")
    if label_column:
        table = _pool.read_columns(ws.config["pool"], [label_column], id_column=ws.config["id_column"], ids=eval_ids)
        ids = _pool.as_ids(table.column(ws.config["id_column"]), ws.id_type)
        labels = table.column(label_column).to_pylist()
    else:
        lab = ws.labeled()
        ids_all = ws._ids(lab.column("id"))
        mask = np.isin(ids_all, eval_ids) & np.array([s == "labeled" for s in lab.column("status").to_pylist()], dtype=bool)
        ids = ids_all[mask]
        labels = np.array(lab.column("label").to_pylist(), dtype=object)[mask].tolist()
    keep = [i for i, v in enumerate(labels) if v is not None]
    return ids[keep], [str(labels[i]) for i in keep]


def _evaluation_classes(labels: list[str], class_index: dict) -> np.ndarray:
    """The class indices of the evaluation labels, shape (n,)."""
    try:
        return np.array([class_index[v] for v in labels], dtype=np.int64)
    except KeyError as exc:
        raise LabelError(f"Expected evaluation labels among the known classes {list(class_index)}. Got {exc.args[0]!r}.") from None


def _round_classes(ws: Workspace, train_labels, eval_labels: list[str] | None = None) -> list:
    """The workspace's classes; without a class list, the labels seen so far, the evaluation set's included.

    A class that only the evaluation set holds yet gets an output the model was not trained
    on: its rows count as misses in the metrics instead of failing the round.  ``eval_labels``:
    the evaluation set's labels when the caller has them already (read here otherwise).
    """
    if ws.classes is not None:
        return ws.classes
    if eval_labels is None:
        eval_labels = _evaluation_rows(ws)[1]
    return sorted({str(v) for v in train_labels} | set(eval_labels))


def _save_npy(path: pathlib.Path, arr: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, arr)
    atomic_write_bytes(path, buf.getvalue())


def _sha256(path) -> str:
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def _seed_round(ws: Workspace, out_dir: pathlib.Path, *, seed: int, k: int | None) -> dict:
    """Round 000: choose the initial labeled set without a model."""
    s = ws.settings
    n = int(s["initial_size"] if k is None else k)
    batch_dir = out_dir / "batch"
    if not (batch_dir / "manifest.json").is_file():  # written with batch.parquet in one rename
        excluded = ws.excluded_ids()
        candidates = ws.pool_ids()[~np.isin(ws.pool_ids(), excluded)]
        method = s["initial_method"]
        if method == "random":
            chosen = seed_random(candidates, n, seed=seed)
        elif method == "kmeans":
            from alscale.loop.evalset import SEED_STREAM, reserve_random

            sample = reserve_random(candidates, min(len(candidates), 20000), seed=seed, stream=SEED_STREAM + 1)
            sample, X = _pool.read_features(ws.config["pool"], sample, id_column=ws.config["id_column"], features=_feature_columns(ws))
            chosen = seed_kmeans(sample, X, n, seed=seed)
        elif method == "hint":
            hint = s.get("hint_column")
            if not hint:
                raise ConfigError("The 'hint' initial method needs the 'hint_column' setting. Got none.")
            table = _pool.read_columns(ws.config["pool"], [hint], id_column=ws.config["id_column"], ids=candidates)
            chosen = seed_by_hint(_pool.as_ids(table.column(ws.config["id_column"]), ws.id_type), table.column(hint).to_pylist(), n, seed=seed)
        else:
            raise ConfigError(f"The initial method must be one of {list(INITIAL_METHODS)}. Got {method!r} instead.")
        _write_seed_batch(ws, batch_dir, chosen, method=method, seed=seed)
    return {"selected": pq.read_table(batch_dir / "batch.parquet").num_rows, "batch": "batch", "strategy": f"seed-{s['initial_method']}"}


def _write_seed_batch(ws: Workspace, batch_dir: pathlib.Path, chosen: np.ndarray, *, method: str, seed: int) -> None:
    """The seed set as a batch manifest of the engine's schema, so any queue takes it (no model: no predictions)."""
    write_id_batch(batch_dir, chosen, id_type=ws.id_type, strategy=f"seed-{method}",
                   run_id=id_batch_run_id("seed", ws.path.name, seed, chosen, ws.pool_key), seed=seed, pool=ws.config["pool"],
                   id_column=ws.config["id_column"], classes=ws.classes)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def run_round(ws: Workspace | str | pathlib.Path, *, model=None, strategy: str | None = None, k: int | None = None,
              seed: int | None = None, actors: int | None = None, mark_pending: bool = False) -> dict:
    """Run (or finish) the next round of the loop.

    Parameters
    ----------
    ws : Workspace or path
    model : path, optional
        Bring-your-own ONNX model for this round (its classes must equal the workspace's); by
        default the workspace's model (``alscale init --model``) if it has one, else the
        workspace's trainer fitted on the training labels.
    strategy : str, optional
        Defaults to the workspace's ``strategy`` setting.
    k : int, optional
        Batch size; defaults to ``batch_size`` (``initial_size`` for the seed round).  With a
        ``budget`` setting, cut to what the budget has left once the training labels and the
        ids pending (sent, not answered yet; outside the evaluation set) are counted (the
        record's ``budget`` entry says so); once it is spent, the round trains and evaluates
        and selects nothing.
    seed : int, optional
        Defaults to the workspace seed plus the round number.
    actors : int, optional
        Ray actors for the selection.
    mark_pending : bool
        Add the selected ids to the pending table (queue ``"manual"``), for teams that label
        from the batch file instead of a labeling queue.

    Returns
    -------
    dict
        The round record (also ``rounds/NNN/round.json``).  Its ``metrics`` are None for the
        seed round, and while no evaluation-set row is labeled (push
        :meth:`Workspace.evaluation_batch` or label its ids); its ``composition`` divergences
        are None while there is nothing to compare with.

    Raises
    ------
    StrategyError
        An unknown ``strategy``, one that needs a committee, or one that needs an embedding
        output the model has none of, before anything of the round is written.
    PoolExhaustedError
        A batch larger than the pool's selectable rows, before the round's folder exists.
    ModelError, ModelContractError
        A model that is not ONNX, names other classes than the round's or cannot score the
        pool's rows, before the round's folder exists.
    WorkspaceError, LabelError, ModelContractError, ConfigError
        With nothing of the round recorded as complete; a WorkspaceError, before the round's
        folder exists, where the budget is spent and the latest round trained on as many labels,
        or an earlier round's ``round.json`` or ``stop_predictions.npy`` is damaged (before
        anything is trained or written), and where the ``inputs.json`` of the round being
        finished is.

    Notes
    -----
    Where some of the latest round's batch is neither answered nor pending (labeled, skipped
    or pushed), a warning says how many, and that this round may select them again.
    """
    for name, value, minimum in (("k", k, 1), ("seed", seed, 0), ("actors", actors, 1)):
        if value is not None:
            check_int(name, value, minimum)  # before the round's folder exists, or its model is trained
    if strategy is not None:
        check_loop_strategy(strategy)  # found after training, it would leave the round started with it
    if model is not None and "://" not in check_path("model", model) and not pathlib.Path(model).is_file():
        raise ModelError(f"Expected the round's model to be an ONNX file. Got {str(model)!r}, which is not a file.")
    ws = ws if isinstance(ws, Workspace) else Workspace.open(check_path("ws", ws))
    with contextlib.ExitStack() as held:
        try:  # one round at a time: a second would write into the same round's folder
            held.enter_context(file_lock(ws.path / ROUND_LOCK, wait=False))
        except BlockingIOError:
            raise WorkspaceError(f"Expected no other round running in workspace {str(ws.path)!r}. Got one (it holds "
                                 f"{ROUND_LOCK}); wait for it to finish.") from None
        return _run_round(ws, model, strategy, k, seed, actors, mark_pending)


def _run_round(ws: Workspace, model, strategy: str | None, k: int | None, seed: int | None, actors: int | None,
               mark_pending: bool) -> dict:
    """:func:`run_round`, its arguments checked, while it holds the workspace's round lock."""
    s = ws.settings
    number = _next_round(ws)
    out_dir = _round_dir(ws, number)
    seed = int(s["seed"]) + number if seed is None else int(seed)
    explicit_model, explicit_strategy = model, strategy
    strategy = strategy or s["strategy"]
    train_ids, train_labels = ws.training_labels()
    if model is None and len(train_ids):
        model = ws.config.get("model")  # the workspace's own model (alscale init --model), if it has one
    record = {"round": number, "created_at": _now(), "seed": seed, "labels": int(len(train_ids))}

    if len(train_ids) == 0 and number != 0:  # with a model too: the seed round is done, and it is not run twice
        raise WorkspaceError(f"Expected training labels for round {number}. Got none; import labels with `alscale label`.")
    history = load_history(ws)
    k, budget = _batch_size_within_budget(ws, number, int(len(train_ids)), k, history)  # refuses before the folder exists
    if budget is not None:
        record["budget"] = budget
    if k and not (out_dir / "batch" / "manifest.json").is_file():  # before the round trains: a batch too large is bad input
        # the pool as it is now (a folder may have grown since init; its footers only); every excluded id is one of
        # its rows (labels and batches are checked against the pool), so this is what the selection will find
        available = _pool.pool_dataset(ws.config["pool"]).count_rows() - len(ws.excluded_ids())
        if k > available:
            raise PoolExhaustedError(available, k)
    if len(train_ids):  # the earlier rounds' stop-set predictions, read at the end of the round: a damaged one is
        _stop_set_predictions(ws, number, int(len(train_ids)))  # refused now, before the round trains and writes its model
    if model is not None and len(train_ids):
        _check_round_model(ws, model, train_ids, train_labels, strategy=strategy if k else None)  # before the round's folder
        # exists, or a warning is logged; k 0 (the budget spent): nothing is selected
    out_dir.mkdir(parents=True, exist_ok=True)
    ws.evaluation_batch()  # a workspace made before it had one gets it here
    _check_resumed_inputs(out_dir, number, _round_inputs(ws, train_ids, train_labels, model=model, strategy=strategy, k=k, seed=seed))
    unanswered = _unanswered_batch(ws, history)
    if unanswered is not None and k and not (out_dir / "batch" / "manifest.json").is_file():
        previous, left, size = unanswered
        logger.warning("%s of round %03d's batch of %d were neither answered nor pending (pushed): this round may select them again; "
                       "push or label them first", "all" if left == size else f"{left:,}", previous, size)
    if len(train_ids) == 0:
        given = [name for name, value in (("model", explicit_model), ("strategy", explicit_strategy)) if value is not None]
        if given:
            logger.warning("round %03d is the seed set (initial method %r): the %s given %s from the first round with labels",
                           number, s["initial_method"], " and ".join(given), "apply" if len(given) > 1 else "applies")
        record.update(_seed_round(ws, out_dir, seed=seed, k=k), kind="seed", metrics=None)
    else:
        record.update(_model_round(ws, out_dir, train_ids, train_labels, model=model, strategy=strategy, k=k, seed=seed,
                                   actors=actors))
    if mark_pending and record["batch"] is not None:
        batch = pq.read_table(out_dir / "batch" / "batch.parquet")
        ws.add_pending(batch.column("id"), batch_run_id=f"round-{number:03d}", queue="manual")
    atomic_write_json(out_dir / ROUND_FILE, record)
    return record


def _batch_size_within_budget(ws: Workspace, number: int, used: int, k: int | None, history: list[dict]) -> tuple[int, dict | None]:
    """The round's batch size: ``k`` (or the workspace's) cut to what the budget has left.

    The budget counts training labels, as its stopping rule does, and the ids sent for
    labeling that may become training labels: pending ids outside the evaluation set with no
    answer yet (but those of this round's own batch, where an interrupted round marked it
    pending already).  So rounds that send their batches before the earlier ones are answered
    never request more labels than the budget.

    Parameters
    ----------
    ws : Workspace
    number : int
        The round's number.
    used : int
        Training labels so far.
    k : int or None
        The batch size asked for; None: ``initial_size`` for the seed round, else ``batch_size``.
    history : list of dict
        The completed rounds (:func:`load_history`).

    Returns
    -------
    k : int
        0 when the budget is spent: the round trains and evaluates on the labels it has and
        selects nothing.
    budget : dict or None
        ``{"budget", "used", "pending", "left", "asked"}`` where the budget cut the batch; None otherwise.

    Raises
    ------
    WorkspaceError
        The budget is spent and the latest round trained on as many labels already.
    """
    s = ws.settings
    asked = int((s["initial_size"] if used == 0 else s["batch_size"]) if k is None else k)
    limit = s["budget"]
    if limit is None:
        return asked, None
    pending = _pending_toward_budget(ws, number)
    if used + pending + asked <= int(limit):
        return asked, None
    left = max(int(limit) - used - pending, 0)
    if left == 0 and history and int(history[-1]["labels"]) >= used:
        raise WorkspaceError(
            f"Expected labels left in the budget of {limit} for round {number:03d}. Got {used} training labels used, which "
            f"round {int(history[-1]['round']):03d} trained on already" + (f", and {pending} pending" if pending else "") +
            f"; raise 'budget' in the settings of {str(ws.path / CONFIG_NAME)!r} to select more" +
            (" (or label the pending ids: the next round trains on them)." if pending else "."))
    return left, {"budget": int(limit), "used": used, "pending": pending, "left": left, "asked": asked}


def _pending_toward_budget(ws: Workspace, number: int) -> int:
    """Ids pending and unanswered outside the evaluation set, but for round ``number``'s own batch: labels on their way."""
    ids = np.unique(ws._ids(ws.pending().column("id")))
    if not len(ids):
        return 0
    skip = [ws._ids(ws.answered_ids()), ws.evaluation_ids()]
    own = _round_dir(ws, number) / "batch" / "batch.parquet"
    if own.is_file():  # a round interrupted after --mark-pending: its batch is the one being finished, not an earlier one
        skip.append(ws._ids(pq.read_table(own, columns=["id"]).column("id")))
    return int(np.count_nonzero(~np.isin(ids, np.concatenate(skip))))


def _unanswered_batch(ws: Workspace, history: list[dict]) -> tuple[int, int, int] | None:
    """(round, ids left, batch size) where some of the latest round's batch is neither answered (labeled, skipped or cancelled) nor pending."""
    if not history or not history[-1].get("batch"):
        return None
    path = _round_dir(ws, int(history[-1]["round"])) / history[-1]["batch"] / "batch.parquet"
    if not path.is_file():
        return None
    ids = ws._ids(pq.read_table(path, columns=["id"]).column("id"))
    handled = np.concatenate([ws._ids(ws.answered_ids()), ws._ids(ws.pending().column("id"))])
    left = int(np.count_nonzero(~np.isin(ids, handled)))
    return None if left == 0 else (int(history[-1]["round"]), left, int(len(ids)))


INPUTS_FILE = "inputs.json"
#: What a round's inputs decide of its batch alone, not of its model.
BATCH_ONLY_INPUTS = {"k", "strategy"}


def _round_inputs(ws: Workspace, train_ids, train_labels, *, model, strategy: str, k: int | None, seed: int) -> dict:
    """What decides a round's model and batch: a rerun of an unfinished round must ask for the same."""
    s = ws.settings
    if len(train_ids) == 0:
        return {"kind": "seed", "k": int(s["initial_size"] if k is None else k), "seed": seed, "initial_method": s["initial_method"]}
    pairs = sorted(zip(map(str, np.asarray(train_ids).tolist()), map(str, train_labels)))
    inputs = {
        "kind": "model", "k": int(s["batch_size"] if k is None else k), "seed": seed, "strategy": strategy,
        "model": _model_input(model) if model is not None else f"trainer:{s['trainer']}",
        "training_labels": hashlib.sha256(json.dumps(pairs).encode()).hexdigest(),
    }
    if ws.classes is None:  # the model's outputs follow the labels seen, which a new evaluation label can extend
        inputs["classes"] = [str(c) for c in _round_classes(ws, train_labels)]
    return inputs


def _model_input(model) -> str:
    try:
        return f"sha256:{_sha256(model)}"
    except OSError:  # not a readable local file: the model check that follows says so
        return f"path:{model}"


def _check_resumed_inputs(out_dir: pathlib.Path, number: int, inputs: dict) -> None:
    """Record a new round's inputs; refuse to finish an interrupted one with different inputs.

    An unfinished round keeps what it already wrote (its model, its batch), so finishing it with
    another model, strategy, k, seed or set of training labels would mix the two.  Strategy and
    k decide only the batch: while none is kept, they may change (a round whose batch was
    refused, e.g. too large, runs again with another k on the model it trained).

    Raises
    ------
    WorkspaceError
        The round was started with other inputs, or its ``inputs.json`` is damaged.
    """
    path = out_dir / INPUTS_FILE
    kept = (out_dir / "model.onnx").is_file() or (out_dir / "batch").exists()
    if not path.is_file() or not kept:  # nothing of the round kept yet: any inputs may start it
        atomic_write_json(path, inputs)
        return
    try:
        before = read_json(path)
    except (ValueError, OSError) as exc:
        raise WorkspaceError(f"Expected the inputs of unfinished round {number:03d} in {str(path)!r}. Got unreadable JSON "
                             f"({first_line(exc)}); delete {str(out_dir)!r} to start the round over.") from None
    if not isinstance(before, dict):
        raise WorkspaceError(f"Expected the inputs of unfinished round {number:03d} in {str(path)!r} to be an object. Got "
                             f"{short_repr(before, 80)}; delete {str(out_dir)!r} to start the round over.")
    changed = sorted(key for key in inputs.keys() | before.keys() if before.get(key) != inputs.get(key))
    if not (out_dir / "batch").exists() and set(changed) <= BATCH_ONLY_INPUTS:
        atomic_write_json(path, inputs)
        return
    if changed:
        detail = "; ".join(f"{key}: {before.get(key)!r} then, {inputs.get(key)!r} now" for key in changed)
        raise WorkspaceError(
            f"Round {number:03d} was started with other inputs and did not finish ({detail}). Expected the same inputs "
            f"to finish it; or delete {str(out_dir)!r} to start the round over.")


def _check_round_model(ws: Workspace, model, train_ids: np.ndarray, train_labels, *, strategy: str | None) -> None:
    """Refuse a model the round cannot use: other classes than the round's, rows it cannot score, or no embedding for the strategy.

    Runs before the round's folder exists, so bad input writes nothing and logs nothing.

    Parameters
    ----------
    ws : Workspace
    model : path
        The round's model (``--model``, or the workspace's).
    train_ids : ndarray of shape (n,)
        The training ids; the first one's features go through the model (feature width, outputs).
    train_labels : sequence of length n
    strategy : str or None
        The round's strategy; None where the round selects nothing.

    Raises
    ------
    ModelError
        The file is not an ONNX model.
    ModelContractError
        Its classes are not the round's, in order, or it cannot score the pool's rows.
    StrategyError
        The strategy needs an embedding output and the model has none.
    """
    check_model_classes(model_classes(model), _round_classes(ws, train_labels), train_labels, path=model)
    _, X_one = _pool.read_features(ws.config["pool"], np.asarray(train_ids)[:1], id_column=ws.config["id_column"],
                                   features=_feature_columns(ws))
    predict_onnx(model, X_one)
    if strategy is not None:
        check_model_strategy(model, strategy)


def _model_round(ws: Workspace, out_dir: pathlib.Path, train_ids, train_labels, *, model, strategy, k, seed, actors) -> dict:
    s = ws.settings
    eval_ids, eval_labels = _evaluation_rows(ws)  # read once: the classes and the metrics see the same labels
    classes = _round_classes(ws, train_labels, eval_labels)
    class_index = {str(c): i for i, c in enumerate(classes)}
    id_column = ws.config["id_column"]
    features = _feature_columns(ws)
    model_path = out_dir / "model.onnx"
    try:
        y = np.array([class_index[str(v)] for v in train_labels], dtype=np.int64)
    except KeyError as exc:
        raise LabelError(f"Expected training labels among the classes {classes}. Got {exc.args[0]!r}.") from None

    if model is not None:  # checked by _check_round_model before the round's folder was made
        if not model_path.is_file():
            tmp = model_path.with_suffix(".onnx.tmp")
            shutil.copyfile(model, tmp)
            tmp.replace(model_path)
        trainer = "external"
    else:
        trainer = s["trainer"]
        if not model_path.is_file():
            _, X = _pool.read_features(ws.config["pool"], train_ids, id_column=id_column, features=features)
            est = train_model(X, y, classes, trainer=trainer, seed=seed)
            export_model(est, model_path)

    y_eval = _evaluation_classes(eval_labels, class_index)
    metrics = previous_metrics = None
    if len(eval_ids):
        _, X_eval = _pool.read_features(ws.config["pool"], eval_ids, id_column=id_column, features=features)
        probs, _ = predict_onnx(model_path, X_eval)
        metrics = evaluate(y_eval, probs, classes)
        metrics["evaluation_labeled"] = int(len(eval_ids))
        metrics["evaluation_size"] = int(ws.config["evaluation"]["size"])
        atomic_write_json(out_dir / "metrics.json", metrics)
        previous_metrics = _previous_model_metrics(ws, classes, X_eval, y_eval)

    stop_ids = ws.stop_set_ids()
    if len(stop_ids):
        _, X_stop = _pool.read_features(ws.config["pool"], stop_ids, id_column=id_column, features=features)
        # class names, not indices: without a class list a round's classes are the labels seen so far,
        # so an index means another class once a new label arrives
        predicted = predict_onnx(model_path, X_stop)[0].argmax(axis=1)
        _save_npy(out_dir / STOP_PREDICTIONS, np.array([str(c) for c in classes])[predicted])

    composition = composition_report(
        [str(v) for v in train_labels], [str(classes[i]) for i in y_eval], _groups(ws, train_ids),
        threshold=float(s["composition_threshold"]))
    atomic_write_json(out_dir / "composition.json", composition)

    k = int(s["batch_size"] if k is None else k)
    manifest = None if k == 0 else select_batch(  # 0: the budget is spent, the round only trains and evaluates
        ws.config["pool"], model_path, out_dir=out_dir, exclude_ids=ws.excluded_ids(), id_type=ws.id_type, strategy=strategy, k=k,
        seed=seed, id_column=id_column, features=features, actors=actors, labeled_ids=train_ids)

    history = [h for h in load_history(ws) if h.get("metrics")]
    current = {"round": int(out_dir.name), "labels": int(len(train_ids)), "metrics": metrics or {},
               "previous_model_metrics": previous_metrics}
    preds, pred_labels = _stop_set_predictions(ws, int(out_dir.name), int(len(train_ids)))
    stopping = check_stopping(
        history + [current], preds, metric=s["metric"], target=s["target"], patience=int(s["patience"]),
        min_gain_per_label=float(s["min_gain_per_label"]), kappa_threshold=float(s["kappa_threshold"]), budget=s["budget"],
        prediction_labels=pred_labels)
    return {
        "kind": "model", "trainer": trainer, "strategy": strategy, "model": "model.onnx", "model_sha256": _sha256(model_path),
        "metrics": metrics, "previous_model_metrics": previous_metrics, "batch": None if manifest is None else "batch",
        "batch_run_id": None if manifest is None else manifest.data.get("run_id"), "selected": 0 if manifest is None else manifest.batch.num_rows,
        "stopping": stopping, "composition_warnings": composition["warnings"],
        "composition": {"classes_jsd": composition["classes"]["js_divergence"],
                        "groups_jsd": {g: r["js_divergence"] for g, r in composition["groups"].items()}},
    }


def _stop_set_predictions(ws: Workspace, number: int, labels: int) -> tuple[list[np.ndarray], list[int]]:
    """Each model's predictions on the stop set and its training labels: the completed rounds', then round ``number``'s.

    The stabilizing-predictions rule compares a model only with one trained on fewer labels
    (:func:`alscale.loop.stopping.stabilizing_predictions`), so each comes with its label count.

    Returns
    -------
    predictions : list of ndarray of shape (n_stop,)
        Class names, oldest round first.
    labels : list of int
        The training labels of each, as its round recorded them.
    """
    rounds = [(int(h["round"]), int(h["labels"])) for h in load_history(ws) if int(h["round"]) != number] + [(number, labels)]
    paths = [(_round_dir(ws, r) / STOP_PREDICTIONS, n) for r, n in rounds]
    n_stop = len(ws.stop_set_ids())
    kept = [(_read_stop_predictions(path, n_stop), n) for path, n in paths if path.is_file()]
    return [p for p, _ in kept], [n for _, n in kept]


def _read_stop_predictions(path: pathlib.Path, n_stop: int) -> np.ndarray:
    """A round's predictions on the stop set, shape (n_stop,), as str; WorkspaceError for a file that is not that."""
    try:
        predicted = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise WorkspaceError(f"Expected a round's predictions on the stop set in {str(path)!r}. Got an unreadable file "
                             f"({first_line(exc)}); {_redo_hint(path.parent)}.") from None
    if predicted.shape != (n_stop,):
        raise WorkspaceError(f"Expected a round's predictions on the stop set in {str(path)!r}: an array of shape ({n_stop},). "
                             f"Got shape {predicted.shape}; {_redo_hint(path.parent)}.")
    return predicted.astype(str)


def _previous_model_metrics(ws: Workspace, classes: list, X_eval: np.ndarray, y_eval: np.ndarray) -> dict | None:
    """The latest earlier round's model measured on this round's evaluation rows, for a like-for-like gain.

    The evaluation set fills up as its labels arrive: comparing a round's metric with the one
    an earlier round measured on fewer rows would count the new rows' difficulty as a gain or a
    loss (:func:`alscale.loop.stopping.metric_gain`).

    Returns
    -------
    dict or None
        ``{"round": n, <metric>: value, ...}``; None where there is no earlier model round, its
        model is gone or its classes are not this round's (classes that followed the labels seen).
    """
    earlier = [h for h in load_history(ws) if h.get("metrics") and h.get("model")]
    if not earlier:
        return None
    path = _round_dir(ws, int(earlier[-1]["round"])) / earlier[-1]["model"]
    try:
        if not path.is_file() or [str(c) for c in model_classes(path) or ()] != [str(c) for c in classes]:
            return None
        probs, _ = predict_onnx(path, X_eval)
    except AlscaleError:  # an earlier model that no longer runs here: the gain falls back to the recorded metrics
        return None
    return {"round": int(earlier[-1]["round"]), **evaluate(y_eval, probs, classes)}


def _groups(ws: Workspace, train_ids: np.ndarray) -> dict:
    columns = ws.config.get("group_columns") or []
    if not columns:
        return {}
    table = _pool.read_columns(ws.config["pool"], columns, id_column=ws.config["id_column"])
    pool_ids = _pool.as_ids(table.column(ws.config["id_column"]), ws.id_type)
    mask = np.isin(pool_ids, train_ids)
    out = {}
    for c in columns:
        values = np.array(table.column(c).to_pylist(), dtype=object)
        out[c] = (values[mask].tolist(), values.tolist())
    return out
