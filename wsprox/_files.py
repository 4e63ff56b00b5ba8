"""Writing output files all at once: a reader never sees half a file, a failure leaves the old one."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import tempfile


def write_atomically(path, write, *, binary: bool = False) -> None:
    """Call ``write(f)`` on a temporary file next to ``path``, then move it onto ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        The file to create or replace.
    write : callable
        Called with the open temporary file (text, UTF-8, or binary if ``binary``).
    binary : bool, optional
        Open the temporary file in binary mode.

    Raises
    ------
    Exception
        Whatever ``write`` or the file system raises; ``path`` is then left as it was (an
        old file untouched, no new one) and the temporary file is removed.

    Notes
    -----
    The temporary file is in ``path``'s directory, so :func:`os.replace` is a rename
    within one file system, which POSIX and Windows perform atomically. The new file gets
    the permissions a plain ``open(path, "w")`` would give it (``0o666`` less the umask).
    A symbolic link is followed: its target is replaced, the link stays. A ``path`` that
    exists but is not a regular file (a FIFO, ``/dev/stdout``, a shell's ``>(...)``, a
    device) has nothing to replace and is written directly. So is a name of an open file
    descriptor (``/dev/stdout``, ``/dev/fd/N``, ``/proc/self/fd/N``), in append mode: it
    may lead to the file that the shell redirected the output into, which must neither be
    replaced nor truncated.
    """
    path = os.fspath(path)
    mode, encoding = ("wb", {}) if binary else ("w", {"encoding": "utf-8"})
    if _names_a_descriptor(path):
        with open(path, mode.replace("w", "a"), **encoding) as f:
            write(f)
        return
    if os.path.exists(path) and not stat.S_ISREG(os.stat(path).st_mode):
        with open(path, mode, **encoding) as f:
            write(f)
        return
    path = os.path.realpath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, mode, **encoding) as f:
            write(f)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


_DESCRIPTOR_NAME = re.compile(r"/(dev/(stdout|stderr|fd/[0-9]+)|proc/(self|[0-9]+)/fd/[0-9]+)")


def _names_a_descriptor(path: str) -> bool:
    """Whether ``path`` is a name of an open file descriptor, such as ``/dev/stdout``."""
    return _DESCRIPTOR_NAME.fullmatch(os.path.abspath(path)) is not None


def check_writable(path) -> None:
    """Raise OSError unless :func:`write_atomically` can write ``path``, trying what it will do.

    For a regular file or a new name, a temporary file is created next to ``path`` and
    removed at once (permission bits alone do not tell: root passes every ``os.access``
    check, also in ``/proc``). An existing file that is not regular (a FIFO, a device) is
    only checked with :func:`os.access`: opening a FIFO would wait for its reader.
    """
    path = os.fspath(path)
    if _names_a_descriptor(path) or (os.path.exists(path) and not stat.S_ISREG(os.stat(path).st_mode)):
        if not os.access(path, os.W_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return
    path = os.path.realpath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    os.close(fd)
    os.remove(tmp)


def save_figure_atomically(fig, path, **savefig_kwargs) -> None:
    """Save a matplotlib figure with :func:`write_atomically`, in the format its extension names.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure to save.
    path : str or os.PathLike
        The file to create or replace; its extension (``.png``, ``.pdf``, ``.svg``, ...)
        chooses the format, as ``fig.savefig(path)`` would.
    **savefig_kwargs
        Passed on to :meth:`~matplotlib.figure.Figure.savefig` (``dpi``, ...).

    Raises
    ------
    ValueError
        If ``path`` has no extension (matplotlib would otherwise pick its default format
        for a name that does not say it).
    """
    ext = os.path.splitext(os.fspath(path))[1].lower().lstrip(".")
    if not ext:
        raise ValueError(f"path {os.fspath(path)!r} has no extension to choose the figure's format by")
    write_atomically(path, lambda f: fig.savefig(f, format=ext, **savefig_kwargs), binary=True)
