"""The ``lensllm-nb`` console script.

Each command group lives in its own module with a ``register(subparsers)`` function
that adds its sub-commands and sets ``func`` on them; ``main`` only dispatches and
turns project errors into one line on stderr. Nothing it prints or records holds a
secret: every message goes through :func:`lensllm_nb.utils.safe_output.mask_secrets`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from pathlib import Path

__all__ = ["main", "build_parser"]

# Command groups, imported lazily by name so `lensllm-nb --help` stays fast.
_GROUPS = ("core", "select", "collect", "store", "notebooks")


class _OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr, like every other error."""

    def error(self, message):
        from ..utils.safe_output import mask_secrets

        self.exit(2, mask_secrets(f"{self.prog}: error: {message} (see `{self.prog} --help`)\n"))


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every command group registered."""
    parser = _OneLineParser(
        prog="lensllm-nb",
        description=(
            "Pick the pretrained LLM to fine-tune from small-subset fine-tuning "
            "curves (LensLLM / rectified scaling law)."
        ),
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in _GROUPS:
        try:
            module = importlib.import_module(f"{__name__}.{group}")
        except ModuleNotFoundError as exc:
            # A group whose module is not written yet must not break the others.
            if exc.name == f"{__name__}.{group}":
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv=None) -> int:
    """Run the console script; return the process exit code."""
    from ..errors import LensLLMError
    from ..utils.safe_output import mask_secrets

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    status, error = "failed", None
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning(args.command, warnings.showwarning)
            code = int(args.func(args) or 0)
        status = "ok" if code == 0 else "failed"
        return code
    except BrokenPipeError:
        # The reader stopped (`lensllm-nb fit ... | head`): no message, and no second
        # error when Python flushes stdout at exit.
        error = "broken pipe: the reader of stdout closed it"
        _silence_stdout()
        return 141  # 128 + SIGPIPE, as a shell reports a command a pipe stopped
    except (LensLLMError, FileNotFoundError) as exc:
        error = mask_secrets(str(exc))
        print(f"lensllm-nb {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as exc:
        # An unreadable input or unwritable output is the user's to fix: one line.
        error = mask_secrets(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
        print(f"lensllm-nb {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        error = "interrupted"
        print(f"lensllm-nb {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        # A bug's traceback, but masked: a driver's message may quote the store URL.
        import traceback

        error = mask_secrets(f"{type(exc).__name__}: {exc}")
        print(mask_secrets("".join(traceback.format_exception(exc))), end="", file=sys.stderr)
        return 1
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        _leave_record(args, status, error)


def _one_line_warning(command, fallback):
    """A `warnings.showwarning` that prints the package's own warnings as one masked line."""
    from ..utils.safe_output import mask_secrets

    def show(message, category, filename, lineno, file=None, line=None):
        if not str(Path(filename).resolve()).startswith(_PACKAGE_DIR):
            return fallback(message, category, filename, lineno, file, line)
        print(mask_secrets(f"lensllm-nb {command}: warning: {message}"), file=file or sys.stderr)

    return show


_PACKAGE_DIR = str(Path(__file__).resolve().parents[1])


def _silence_stdout() -> None:
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is no file (a test's capture)
        pass


def _leave_record(args, status, error) -> None:
    """Every command leaves a run record (config, versions, status), also on failure."""
    from ..utils.provenance import run_record, write_record

    # run_record masks every secret (config, argv, error) before it is written.
    config = {k: v for k, v in vars(args).items() if k != "func"}
    try:
        write_record(run_record(f"cli-{args.command}", config, seed=config.get("seed"), status=status, error=error))
    except OSError as exc:
        # A read-only cache must not turn a finished command into a failure.
        print(f"lensllm-nb: could not write the run record ({exc})", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
