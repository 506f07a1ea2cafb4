"""The run folder's public face (docs/reliability.md). Imports no torch: the checkpoint
functions import it when called."""

from . import lock
from .checkpoint import (
    FileTransaction,
    WriteFailed,
    atomic_write,
    commit_epoch,
    is_temporary,
    load_committed,
    load_state,
    load_weights,
    save_state,
    save_weights,
    weights_writer,
)
from .fingerprint import (
    CHEAP_BYTES,
    changed,
    check_same_inputs,
    file_sha256,
    fingerprint,
)
from .lock import LOCK
from .manifest import MANIFEST, Manifest, NotOurs
from .run_dir import (
    OutputFolder,
    RunDir,
    check_apart,
    check_same_run,
    content,
    first_change,
    jsonable,
    read_results,
)

__all__ = [
    "CHEAP_BYTES", "LOCK", "MANIFEST", "FileTransaction", "Manifest", "NotOurs", "OutputFolder",
    "RunDir", "WriteFailed", "atomic_write", "changed", "check_apart", "check_same_inputs",
    "check_same_run", "commit_epoch", "content", "file_sha256", "fingerprint",
    "first_change", "is_temporary", "jsonable", "load_committed", "load_state", "load_weights", "lock",
    "read_results", "save_state", "save_weights", "weights_writer",
]
