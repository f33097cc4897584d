"""export.py's work, imported once its flags have parsed: a checkpoint's model written as a Hugging Face folder or
ONNX (model/export_write.py), measured against the checkpoint, then moved into place whole."""
import os
import shutil
import tempfile

from engine.checkpoint import load_checkpoint
from engine.config import check_machine, check_values
from engine.settings import EXPORT_FIELDS
from engine.interrupt import StopSignals
from model.export_format import MANIFEST_FILE, REMOTE_CODE_FILE, ExportError, read_manifest, require_onnx
from model.export_write import export_model


STAGING = ".export-"  # .<out's name>.export-<pid>-<random>: an export being written beside --out


def check_out(out: str, overwrite: bool, ckpt: str) -> None:
    """--out may be new, or with --overwrite an earlier export holding only what its manifest lists."""
    if os.path.commonpath([out, os.path.abspath(ckpt)]) == out:
        raise ExportError(f"--out {out}: holds the checkpoint being exported ({ckpt}); export to another folder")
    if not os.path.exists(out):
        return
    if not os.path.isdir(out):
        raise ExportError(f"--out {out}: is a file; name a folder")
    if not overwrite:
        raise ExportError(f"--out {out}: exists; give --overwrite to replace an earlier export")
    names = os.listdir(out)
    written = read_manifest(out)
    foreign = sorted(set(names) - set(written or {}) - {MANIFEST_FILE})
    if foreign:
        raise ExportError(f"--out {out}: holds files export.py did not write ({', '.join(foreign[:3])}"
                          f"{', ...' if len(foreign) > 3 else ''}); --overwrite replaces only an earlier export, "
                          f"whole" + ("" if written is not None else f" (one with its {MANIFEST_FILE})"))


def remove_stale_staging(parent: str, name: str) -> None:
    """Staging folders of exports whose process is gone (killed before it could remove its own)."""
    prefix = f".{name}{STAGING}"
    for entry in os.listdir(parent):
        pid = entry[len(prefix):].split("-", 1)[0] if entry.startswith(prefix) else ""
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)
        except PermissionError:
            pass


def export_checkpoint(flags: dict) -> dict:
    """export.py: write the checkpoint's model to --out (in a hidden folder beside it first, so a failed or
    interrupted export leaves --out as it was) and print how it agrees with the checkpoint and how to load it."""
    check_values(EXPORT_FIELDS, flags)
    check_machine(EXPORT_FIELDS, flags)
    out = os.path.abspath(flags["out"])
    check_out(out, flags["overwrite"], flags["ckpt"])
    if flags["format"] == "onnx":
        require_onnx()
    state = load_checkpoint(flags["ckpt"])
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    remove_stale_staging(parent, os.path.basename(out))
    with StopSignals() as signals:  # SIGINT or SIGTERM: Interrupted, and the staging folder is removed on the way out
        staging = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}{STAGING}{os.getpid()}-", dir=parent)
        try:
            result = export_model(state, os.path.join(staging, "export"), flags["format"])
            signals.check()  # a signal whose exception was lost must not let the export into place
            move_into_place(os.path.join(staging, "export"), out, flags["overwrite"], flags["ckpt"], staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    print(f"wrote {flags['out']}: {result['class']}; probabilities within {result['max_abs_difference']:.1e} of the "
          f"checkpoint's on {len(state['label_names'])} labels")
    print(f"  python predict.py --ckpt {flags['out']} \"some text\"")
    if flags["format"] == "hf":
        remote = ", trust_remote_code=True" if result["remote_code"] else ""
        print(f"  transformers.pipeline(\"text-classification\", model=\"{flags['out']}\", top_k=None{remote})"
              + (f"  (runs {REMOTE_CODE_FILE}: the run's {state['config']['pooling']} pooling)" if remote else ""))
    return result


def move_into_place(export: str, out: str, overwrite: bool, ckpt: str, staging: str) -> None:
    """The finished export becomes --out. What is at --out now is checked again (a folder may have appeared since
    the start): only an earlier export is replaced, and only with --overwrite; a rename never replaces a folder
    that holds files."""
    if os.path.exists(out) and not overwrite:
        raise ExportError(f"--out {out}: appeared while exporting; left as it is, nothing was written")
    check_out(out, overwrite, ckpt)
    replaced = os.path.join(staging, "replaced")
    if os.path.exists(out):
        os.rename(out, replaced)
    try:
        os.rename(export, out)
    except OSError:
        if os.path.exists(replaced) and not os.path.exists(out):
            os.rename(replaced, out)
        raise ExportError(f"--out {out}: appeared while exporting; left as it is, nothing was written") from None
