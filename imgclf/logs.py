"""Logging for rule scripts: one log file per job, uncaught errors included."""

import logging
import sys
from pathlib import Path

from .files import FileFault


def setup_logging(log_path: str | Path, level: int = logging.INFO) -> None:
    """Send logging, warnings, progress bars and uncaught tracebacks to the rule's log.

    Messages also go to the terminal so that a failing job says why where the user looks;
    progress bars go only to the log, where their carriage returns do no harm.
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = open(log_path, "a", buffering=1)  # noqa: SIM115 (lives as long as the job)
    terminal = sys.stderr
    sys.stderr = log_file  # tqdm and stray prints from libraries land in the log
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[logging.StreamHandler(log_file), logging.StreamHandler(terminal)],
        force=True,
    )
    logging.captureWarnings(True)

    def log_uncaught(exc_type, exc, tb):
        if issubclass(exc_type, FileFault):  # its one line says what and how to fix it
            logging.getLogger("imgclf").critical("%s", exc)
        else:
            logging.getLogger("imgclf").critical("uncaught error", exc_info=(exc_type, exc, tb))

    sys.excepthook = log_uncaught
