#!/usr/bin/env python3
"""Sums a heaptrack flame-graph stack file (leaked bytes = live at the snapshot) by
owner: the innermost frame outside the allocator, std, collections and runtime
plumbing decides who holds the bytes. Prints KiB in total and per socket.
Usage: heap_owners.py stacks.folded sockets"""
import re
import sys
from collections import defaultdict

# Frames that allocate on someone else's behalf: skipped when looking for the owner.
PLUMBING = re.compile(
    r"^(<)?(alloc|core|std|hashbrown|bytes|futures_\w+|futures|__rust|__rdl|__libc|malloc|"
    r"realloc|calloc|operator new|smallvec|indexmap|dashmap|arc_swap|parking_lot|"
    r"serde|serde_json|memchr|slab|tracing|http::header|tokio::sync|tokio::util|"
    r"tokio::runtime::task|tokio::task|0x|<unresolved|\?\?)"
)
TASK = re.compile(r"tokio::runtime::task::(raw|core|harness)|tokio::task::spawn|tokio::runtime::\w+::spawn")
OWNERS = [
    ("tungstenite read buffer", r"tungstenite::.*(ReadBuffer|read_buffer|FrameCodec::new|in_buffer)"),
    ("tungstenite write buffer", r"tungstenite::.*(out_buffer|write_out|buffer_frame|FrameCodec::(write|buffer))"),
    ("tungstenite (other)", r"^<?tungstenite|^<?tokio_tungstenite"),
    ("hyper / upgrade / handshake request", r"^<?(hyper|hyper_util|http_body|h2|tower|axum|http)\b"),
    ("engineioxide (socket, channels, tasks)", r"^<?engineioxide"),
    ("socketioxide (socket, handlers, rooms)", r"^<?socketioxide"),
    ("ours: realtime (SocketSession, queue)", r"^<?diary_realtime::(realtime|connections|fanout|ratelimit)"),
    ("ours: collab (docs, actors)", r"^<?diary_realtime::collab"),
    ("ours: presence", r"^<?diary_realtime::presence"),
    ("ours: other", r"^<?diary_realtime"),
    ("yrs (doc contents)", r"^<?yrs"),
    ("sqlx / postgres", r"^<?sqlx"),
    ("governor (rate limit)", r"^<?governor"),
    ("tokio (io driver, timers)", r"^<?tokio"),
]


LEGACY = [("$LT$", "<"), ("$GT$", ">"), ("$u20$", " "), ("$C$", ","), ("$RF$", "&"),
          ("$BP$", "*"), ("$u7b$", "{"), ("$u7d$", "}"), ("..", "::")]


def clean(frame):
    """One frame's function name: no file suffix, no legacy mangling or hash."""
    frame = re.sub(r" \([^()]*\)$", "", frame.strip())
    for a, b in LEGACY:
        frame = frame.replace(a, b)
    return re.sub(r"::h[0-9a-f]{16}$", "", frame)


def owner(frames):
    task = False
    for frame in reversed(frames):
        if TASK.search(frame):
            task = True
            continue
        if PLUMBING.search(frame):
            continue
        for name, pattern in OWNERS:
            if re.search(pattern, frame):
                if task and not name.startswith("tokio"):
                    return name + " [task]"
                return name
        return "other: " + frame[:60]
    return "unattributed"


def main():
    path, sockets = sys.argv[1], int(sys.argv[2])
    totals = defaultdict(int)
    for line in open(path, encoding="utf-8", errors="replace"):
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not count.isdigit():
            continue
        frames = [clean(f) for f in stack.split(";") if f.strip()]
        totals[owner(frames)] += int(count)
    grand = sum(totals.values())
    print(f"| owner | KiB total | bytes per socket | share |")
    print("|---|---|---|---|")
    for name, b in sorted(totals.items(), key=lambda kv: -kv[1]):
        if b < grand * 0.005:
            continue
        print(f"| {name} | {b / 1024:,.0f} | {b / sockets:,.0f} | {100 * b / grand:.1f}% |")
    print(f"| **live heap** | {grand / 1024:,.0f} | {grand / sockets:,.0f} | 100% |")


if __name__ == "__main__":
    main()
