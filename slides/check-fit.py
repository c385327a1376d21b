#!/usr/bin/env python3
"""Checks that every slide of each deck fits a terminal of the given size, headlessly.

    python3 slides/check-fit.py 110 50 slides/*.md

presenterm validates overflows only when it presents (`validate_overflows: always` in
slides/config.yaml), never when it exports. So this runs it in a pseudo-terminal of exactly
COLUMNS x ROWS, answers the few queries it sends the terminal at start-up, and reads what it
draws: either "presentation overflows ... on slide N" (or another loading error), which fails,
or the first slide's footer ("1 / N"), which means every slide fitted. Only the standard
library is used; it needs a Unix (pty).
"""

import os
import pty
import re
import select
import signal
import struct
import sys
import time

import fcntl
import termios

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(HERE, "config.yaml")
PATIENCE_S = 60

# What presenterm asks the terminal at start-up, and a plain terminal's answers. Without an
# answer it waits, so a pseudo-terminal with nobody at the other end must reply.
ANSWERS = {
    b"\x1b[c": b"\x1b[?62;c",  # primary device attributes: a VT220
    b"\x1b[5n": b"\x1b[0n",  # device status: OK
    b"\x1b[6n": b"\x1b[1;1R",  # cursor position
    b"\x1b[16t": b"\x1b[6;20;10t",  # cell size in pixels
}
ESCAPE = re.compile(rb"\x1b(\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|_[^\x1b]*\x1b\\|.)")
FOOTER = re.compile(rb"\b1 / \d+\b")
ERROR = re.compile(rb"rror loading presentation:?\s*(.*?)(\s{2,}|$)")


def check(deck, columns, rows):
    """Returns None when the deck fits, or what went wrong."""
    pid, fd = pty.fork()
    if pid == 0:
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        os.environ["TERM"] = "xterm-256color"
        args = ["presenterm", "--config-file", CONFIG, "--validate-overflows", deck]
        try:
            os.execvp(args[0], args)
        finally:
            os._exit(127)
    raw = b""
    answered = {}
    verdict = "presenterm drew nothing recognisable within %d s" % PATIENCE_S
    deadline = time.time() + PATIENCE_S
    try:
        while time.time() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                continue
            try:
                data = os.read(fd, 65536)
            except OSError:
                break
            if not data:
                break
            raw += data
            for query, answer in ANSWERS.items():
                count = raw.count(query)
                if count > answered.get(query, 0):
                    os.write(fd, answer * (count - answered.get(query, 0)))
                    answered[query] = count
            text = ESCAPE.sub(b" ", raw)
            text = re.sub(rb"\s+", b" ", text)
            error = ERROR.search(text)
            if error:
                verdict = error.group(1).decode("utf-8", "replace").strip(" :") or "loading failed"
                break
            if FOOTER.search(text):
                verdict = None
                break
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)
    return verdict


def main():
    if len(sys.argv) < 4:
        sys.exit("usage: check-fit.py COLUMNS ROWS DECK.md...")
    columns, rows = int(sys.argv[1]), int(sys.argv[2])
    failed = 0
    for deck in sys.argv[3:]:
        problem = check(deck, columns, rows)
        if problem:
            failed += 1
            print("does not fit %dx%d: %s: %s" % (columns, rows, deck, problem))
        else:
            print("fits %dx%d: %s" % (columns, rows, deck))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
