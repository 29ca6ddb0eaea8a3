"""Upload benchmark: what an upload through the api costs beside Pillow decoding the same bytes,
and whether refused oversized bodies keep the api's memory flat.

Starts Redis, a fresh SQLite database and one api process (`python -m easel_api`, local file
storage unless --storage s3, which starts moto's S3 server), makes a ~10 MiB PNG, JPEG and WebP
(noise over gradients, sized to compress to just under the 10,485,760-byte upload limit), then:

* uploads: `POST /v1/nodes/{id}/image` (a fresh image node each time), interleaved round by
  round with `Image.open(...).load()` of the same bytes in this process, so both are measured
  under the same load; prints p50/p95 of each and the ratio upload p50 / decode p50;
* refused bodies: 30 MiB multipart uploads sent over raw sockets, first with a declared
  Content-Length, then chunked (no length: the api must count while reading), one at a time;
  prints how much had been sent when the 413 arrived and the api's RSS before/after and peak
  (VmHWM from /proc/<pid>/status, reset through /proc/<pid>/clear_refs first).

    uv run python bench/upload.py [--rounds 10] [--refused 20] [--storage local|s3]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import os
import secrets
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import ADMIN_TOKEN, percentile, start_redis  # noqa: E402
from easel_shared.imaging import MAX_UPLOAD_BYTES, inspect_with_thumbnail  # noqa: E402
from easel_shared.migrate import upgrade  # noqa: E402
from easel_shared.storage import S3ObjectStore  # noqa: E402
from tests.fixtures.processes import running  # noqa: E402
from tests.fixtures.s3 import _start_moto, free_port  # noqa: E402

MIB = 1024 * 1024
BOUNDARY = "easel-bench-" + "b" * 20
BOARD_SIZE = 10
# Files land between these two sizes (just under the limit).
TARGET_LOW, TARGET_HIGH = MAX_UPLOAD_BYTES - 320 * 1024, MAX_UPLOAD_BYTES - 16 * 1024
NOISE = 0.3  # share of noise blended over the gradients


# --------------------------------------------------------------------------- the images


def _picture(width: int, height: int) -> Image.Image:
    ramp = Image.linear_gradient("L")
    base = Image.merge("RGB", (ramp.resize((width, height)),
                               ramp.transpose(Image.Transpose.ROTATE_90).resize((width, height)),
                               Image.radial_gradient("L").resize((width, height))))
    noise = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    return Image.blend(base, noise, NOISE)


def _encode(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    options: dict[str, dict[str, object]] = {
        "PNG": {"compress_level": 6}, "JPEG": {"quality": 95},
        # quality 100: at 95 libwebp's first partition overflows (error 6) near 13 MP
        "WEBP": {"quality": 100, "method": 0}}
    image.save(out, format=fmt, **options[fmt])
    return out.getvalue()


def make_image(fmt: str) -> tuple[bytes, tuple[int, int]]:
    """An image of `fmt` whose encoding is just under the upload limit (size found by scaling
    the pixel count: encoded size is close to proportional to it for this content)."""
    side = 1024
    target = (TARGET_LOW + TARGET_HIGH) / 2
    for _ in range(8):
        width, height = side * 4 // 3, side
        data = _encode(_picture(width, height), fmt)
        if TARGET_LOW <= len(data) <= TARGET_HIGH:
            return data, (width, height)
        side = max(64, int(side * (target / len(data)) ** 0.5 * (0.995 if len(data) > target else 1.0)))
    raise SystemExit(f"could not size a {fmt} just under {MAX_UPLOAD_BYTES:,} bytes (last {len(data):,})")


def multipart(data: bytes, filename: str, content_type: str) -> bytes:
    return b"".join([
        f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
        f"Content-Type: {content_type}\r\n\r\n".encode(), data, f"\r\n--{BOUNDARY}--\r\n".encode()])


# --------------------------------------------------------------------------- the stack


@contextlib.contextmanager
def local_api(args: argparse.Namespace, workdir: Path) -> Iterator[tuple[str, int, int]]:
    """Yields (api_url, api_port, api_pid) with Redis, storage and one api process running."""
    with contextlib.ExitStack() as stack:
        redis_server = start_redis(stack)
        db_url = f"sqlite:///{workdir / 'bench.db'}"
        upgrade(db_url)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "DATABASE_URL": db_url, "REDIS_URL": redis_server.url,
            "ADMIN_TOKEN": ADMIN_TOKEN, "URL_SIGNING_SECRET": "bench-signing-" + secrets.token_hex(8),
            "API_PORT": str(port), "API_PUBLIC_URL": url, "LOG_LEVEL": args.log_level, "LOG_FORMAT": "text",
            "RATE_LIMIT_UPLOAD_PER_MINUTE": "1000000",
        }
        if args.storage == "s3":
            reasons: list[str] = []
            s3 = _start_moto(stack, reasons)
            if s3 is None:
                raise SystemExit("could not start moto: " + "; ".join(reasons))
            S3ObjectStore(endpoint_url=s3.endpoint_url, bucket="easel-bench", region="us-east-1",
                          access_key_id=s3.access_key_id, secret_access_key=s3.secret_access_key).ensure_bucket()
            env.update({"STORAGE_BACKEND": "s3", "S3_ENDPOINT_URL": s3.endpoint_url, "S3_BUCKET": "easel-bench",
                        "S3_REGION": "us-east-1", "S3_ACCESS_KEY_ID": s3.access_key_id,
                        "S3_SECRET_ACCESS_KEY": s3.secret_access_key})
        else:
            env.update({"STORAGE_BACKEND": "local", "LOCAL_STORAGE_DIR": str(workdir / "objects")})
        proc = stack.enter_context(running("easel_api", env, f"{url}/readyz", log=workdir / "api.log"))
        if args.profile:
            # py-spy samples every thread of the api while the run goes on (200 Hz, without pausing it).
            spy = subprocess.Popen(["py-spy", "record", "--pid", str(proc.pid), "--nonblocking", "--threads",
                                    "--rate", "200", "--format", args.profile_format, "--output", args.profile,
                                    *(["--idle"] if args.profile_idle else [])], stdout=subprocess.DEVNULL)
            stack.callback(spy.wait)
            stack.callback(spy.send_signal, 2)  # SIGINT: py-spy writes its output and exits
        yield url, port, proc.pid


# --------------------------------------------------------------------------- uploads


@dataclass
class Format:
    name: str
    content_type: str
    data: bytes
    size: tuple[int, int]
    body: bytes = b""
    upload_ms: list[float] = field(default_factory=list)
    decode_ms: list[float] = field(default_factory=list)
    inspect_ms: list[float] = field(default_factory=list)


class Nodes:
    """Fresh, empty image nodes (an upload is only available on an empty node)."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.made = 0
        self.board = ""

    def next(self) -> str:
        if self.made % BOARD_SIZE == 0:
            self.board = self.client.post("/v1/boards", json={"name": f"bench {self.made}"}).json()["id"]
        self.made += 1
        return str(self.client.post(f"/v1/boards/{self.board}/nodes", json={"kind": "image"}).json()["id"])


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def decode(data: bytes) -> None:
    with Image.open(io.BytesIO(data)) as image:
        image.load()


def upload(client: httpx.Client, node_id: str, body: bytes) -> None:
    r = client.post(f"/v1/nodes/{node_id}/image", content=body,
                    headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    if r.status_code != 200:
        raise SystemExit(f"upload refused: {r.status_code} {r.text[:300]}")


def run_uploads(client: httpx.Client, formats: list[Format], rounds: int, warmup: int) -> None:
    nodes = Nodes(client)
    for i in range(warmup + rounds):
        for f in formats:  # round by round, so every format and both sides see the same load
            node = nodes.next()
            up = timed(functools.partial(upload, client, node, f.body))
            dec = timed(functools.partial(decode, f.data))
            ins = timed(functools.partial(inspect_with_thumbnail, f.data))
            if i >= warmup:
                f.upload_ms.append(up)
                f.decode_ms.append(dec)
                f.inspect_ms.append(ins)


# --------------------------------------------------------------------------- refused bodies


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of `pid`, in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux: write 5 to clear_refs); False if not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@dataclass
class Refusal:
    status: int
    sent: int  # bytes of body sent when the response arrived
    ms: float


def send_oversized(port: int, path: str, api_key: str, size: int, chunked: bool) -> Refusal:
    """POST a `size`-byte file as multipart over a raw socket, sending until the response
    arrives (then stop and close): how much the api read before refusing."""
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    block = b"\x89PNG\r\n\x1a\n" + os.urandom(256 * 1024 - 8)
    pieces = [head] + [block] * (size // len(block)) + [tail]
    framing = ("Transfer-Encoding: chunked\r\n" if chunked
               else f"Content-Length: {sum(len(p) for p in pieces)}\r\n")
    request = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {api_key}\r\n"
               f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n{framing}\r\n").encode()
    if chunked:
        pieces = [b"%x\r\n%s\r\n" % (len(p), p) for p in pieces] + [b"0\r\n\r\n"]
    t0 = time.perf_counter()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setblocking(False)
    answer = b""
    sent = 0
    try:
        pending = request
        queue = iter(pieces)
        body_started = False
        while True:
            readable, writable, _ = select.select([sock], [sock] if pending else [], [], 30)
            if readable:
                break
            if not writable:
                if pending:
                    raise SystemExit("the api neither read the body nor answered within 30 s")
                continue
            try:
                n = sock.send(pending)
            except (BrokenPipeError, ConnectionResetError):
                break
            if body_started:
                sent += n
            pending = pending[n:]
            if not pending:
                nxt = next(queue, None)
                body_started = True
                if nxt is None:
                    pending = b""
                    # all sent: wait for the answer
                    select.select([sock], [], [], 30)
                    break
                pending = nxt
        sock.setblocking(True)
        sock.settimeout(30)
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in answer:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
    finally:
        sock.close()
    ms = (time.perf_counter() - t0) * 1000
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    return Refusal(status, sent, ms)


@dataclass
class MemoryRun:
    label: str
    refusals: list[Refusal]
    rss_before: int
    rss_after: int
    peak: int
    peak_reset: bool


def run_refused(pid: int, port: int, client: httpx.Client, api_key: str, n: int, size: int,
                chunked: bool) -> MemoryRun:
    nodes = Nodes(client)
    node_ids = [nodes.next() for _ in range(n)]
    time.sleep(0.5)
    peak_reset = reset_peak(pid)
    before = proc_status(pid)
    refusals = [send_oversized(port, f"/v1/nodes/{node}/image", api_key, size, chunked) for node in node_ids]
    time.sleep(0.5)
    after = proc_status(pid)
    return MemoryRun("chunked (no Content-Length)" if chunked else "declared Content-Length", refusals,
                     before["VmRSS"], after["VmRSS"], after["VmHWM"], peak_reset)


def api_upload_mean(api_url: str) -> float | None:
    """Mean server-side latency (ms) of successful uploads, from the api's /metrics."""
    total = count = 0.0
    for line in httpx.get(f"{api_url}/metrics", timeout=10).text.splitlines():
        if not line.startswith("easel_http_request_duration_seconds_") or "/image\"" not in line:
            continue
        if 'method="POST"' not in line or 'status="200"' not in line:
            continue
        name, _, value = line.rpartition(" ")
        if name.startswith("easel_http_request_duration_seconds_sum"):
            total += float(value)
        elif name.startswith("easel_http_request_duration_seconds_count"):
            count += float(value)
    return 1000 * total / count if count else None


def early_decode_outcomes(api_url: str) -> dict[str, int]:
    """How the api's decodes while the body arrived went (easel_upload_early_decodes_total)."""
    out = {}
    for line in httpx.get(f"{api_url}/metrics", timeout=10).text.splitlines():
        if line.startswith("easel_upload_early_decodes_total{"):
            name, _, value = line.rpartition(" ")
            out[name.split('"')[1]] = int(float(value))
    return out


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10, help="measured uploads per format (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="uploads per format run first and not measured")
    parser.add_argument("--refused", type=int, default=20, help="oversized bodies per framing (default 20)")
    parser.add_argument("--refused-mib", type=int, default=30, help="size of each oversized file (default 30)")
    parser.add_argument("--storage", choices=("local", "s3"), default="local")
    parser.add_argument("--formats", nargs="+", default=["PNG", "JPEG", "WEBP"], choices=["PNG", "JPEG", "WEBP"])
    parser.add_argument("--profile", default=None, metavar="FILE",
                        help="record the api with py-spy (must be installed) into FILE")
    parser.add_argument("--profile-format", default="speedscope", help="py-spy output format (default speedscope)")
    parser.add_argument("--profile-idle", action="store_true", help="py-spy: count waiting threads too")
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--workdir", default=None, help="keep the database, objects and api log here")
    args = parser.parse_args()

    t0 = time.perf_counter()
    formats = []
    for name, ctype in (("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")):
        if name in args.formats:
            data, size = make_image(name)
            formats.append(Format(name, ctype, data, size, multipart(data, f"bench.{name.lower()}", ctype)))
    print(f"images made in {time.perf_counter() - t0:.1f} s: "
          + ", ".join(f"{f.name} {len(f.data):,} bytes {f.size[0]}x{f.size[1]}" for f in formats), flush=True)

    with contextlib.ExitStack() as stack:
        workdir = Path(args.workdir) if args.workdir else Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="easel-bench-upload-")))
        workdir.mkdir(parents=True, exist_ok=True)
        url, port, pid = stack.enter_context(local_api(args, workdir))
        admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60)
        key = admin.post("/v1/admin/accounts", json={"name": "bench", "credits": 0}).json()["api_key"]
        client = stack.enter_context(httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"},
                                                  timeout=120))
        # A small upload first, so the upload path is imported and warm before memory is measured.
        tiny = io.BytesIO()
        Image.new("RGB", (64, 64), "white").save(tiny, format="PNG")
        upload(client, Nodes(client).next(), multipart(tiny.getvalue(), "tiny.png", "image/png"))
        memory = [run_refused(pid, port, client, key, args.refused, args.refused_mib * MIB, chunked)
                  for chunked in (False, True)]
        run_uploads(client, formats, args.rounds, args.warmup)
        server_mean = api_upload_mean(url)
        early = early_decode_outcomes(url)

    print(f"\nuploads: {args.rounds} per format (+{args.warmup} warm-up), interleaved with decodes, "
          f"{args.storage} storage, SQLite, {os.cpu_count()} cores")
    print(f"{'format':<6} {'bytes':>11} {'pixels':>11}  {'upload p50':>10} {'p95':>7}  {'decode p50':>10} "
          f"{'p95':>7}  {'ratio':>6}  {'inspect+thumb p50':>17}")
    for f in formats:
        up50, dec50 = statistics.median(f.upload_ms), statistics.median(f.decode_ms)
        print(f"{f.name:<6} {len(f.data):>11,} {f.size[0]:>5}x{f.size[1]:<5}  {up50:>8.1f}ms "
              f"{percentile(f.upload_ms, 95):>5.1f}ms  {dec50:>8.1f}ms {percentile(f.decode_ms, 95):>5.1f}ms"
              f"  {up50 / dec50:>5.2f}x"
              f"  {statistics.median(f.inspect_ms):>15.1f}ms")
    print("ratio = upload p50 / decode p50 (aim: within 1.5x); decode = Image.open(...).load() of the same "
          "bytes in this process;\ninspect+thumb = easel's validation and thumbnail "
          "(inspect_with_thumbnail) in this process"
          + (f"; api server mean of these uploads {server_mean:.1f} ms" if server_mean else ""))
    print("uploads decoded while their body arrived (the api's easel_upload_early_decodes_total, the run's "
          "refused bodies and the warm-up included): " + (", ".join(f"{k} {v}" for k, v in sorted(early.items()))
                                                          or "none"))
    if not args.refused:
        return
    print(f"\nrefused bodies: {args.refused_mib} MiB files, one at a time, api pid {pid}")
    for m in memory:
        statuses = sorted({r.status for r in m.refusals})
        sent = [r.sent / MIB for r in m.refusals]
        print(f"  {m.label:<28} {len(m.refusals)} sent, statuses {statuses}; body sent when the answer came "
              f"p50 {statistics.median(sent):.1f} MiB max {max(sent):.1f} MiB; answer p50 "
              f"{statistics.median(r.ms for r in m.refusals):.0f} ms")
        print(f"  {'':<28} api RSS before {m.rss_before / MIB:.1f} MiB, after {m.rss_after / MIB:.1f} MiB, "
              f"peak (VmHWM{'' if m.peak_reset else ', not reset: lifetime'}) {m.peak / MIB:.1f} MiB: "
              f"peak delta {(m.peak - m.rss_before) / MIB:+.1f} MiB")


if __name__ == "__main__":
    main()
