"""One logger per module, with :mod:`logging` imported on the first record, not by ``import
tickwork``.

``logging`` (with ``traceback``, ``re`` and ``string``) is most of what importing the thread core
would cost; most programs configure it anyway, and then the first record finds it loaded.
:func:`get_logger` returns a stand-in for ``logging.getLogger(name)`` that fetches the real logger
on its first use and keeps its methods, so a record costs what a real logger's does.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (see _protocols)
if TYPE_CHECKING:
    import logging

__all__ = ["get_logger", "resolve"]


class _Logger:
    """``logging.getLogger(name)``, fetched on first use (see the module docs)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def _real(self) -> logging.Logger:
        import logging

        return logging.getLogger(self.name)

    def __getattr__(self, attribute: str) -> object:
        value = getattr(self._real(), attribute)
        if callable(value):  # its methods (debug, warning, log, ...): kept, bound to it
            self.__dict__[attribute] = value
        return value

    def __repr__(self) -> str:
        return f"<tickwork logger {self.name!r} (logging imported on first use)>"


def get_logger(name: str) -> logging.Logger:
    """What ``logging.getLogger(name)`` returns, without importing logging yet."""
    return _Logger(name)  # type: ignore[return-value]


def resolve(logger: logging.Logger) -> None:
    """Import logging now (a signal handler is about to be installed: the first record must
    not be an import made inside the handler)."""
    logger.isEnabledFor(0)
