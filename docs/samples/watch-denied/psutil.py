"""psutil as a user sees another user's process: every look at it is denied.

`connleak watch` run in this folder imports this module instead of psutil, so the docs'
permission sample reads the same whichever user runs the suite (root may look at pid 1).
"""


class Error(Exception):
    pass


class NoSuchProcess(Error):
    pass


class AccessDenied(Error):
    pass


def Process(pid):
    raise AccessDenied(pid)
