"""Launch tests run offline: anything that reaches for a non-loopback address fails at once.

Google's clients reach the network two ways: Python sockets (the storage client,
google-auth's metadata-server probe, apitools) and gRPC's own C core (the
Dataflow API client), which never calls the socket module. `block_network()`
closes both in the process that calls it, before a single packet leaves:

- a connect to, or a name lookup of, anything but 127.0.0.0/8, ::1 or
  `localhost` raises NetworkBlocked (a ConnectionRefusedError);
- a gRPC channel to such a target is replaced by one whose every call fails
  with PERMISSION_DENIED, which Google's and Beam's retry rules give up on
  at once (a refused connection would be retried for half a minute);
- Google's metadata server (credential discovery) is pointed at a closed
  loopback port.

`run_offline` runs Python code or the CLI in a child process guarded so; the
child prints BLOCKED_MARK to stderr for every attempt it stopped.
"""

import ipaddress
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
BLOCKED_MARK = "offline test: blocked"


class NetworkBlocked(ConnectionRefusedError):
    """A test process tried to reach beyond this machine."""


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address, maybe with a zone) stays on this machine."""
    host = host.strip("[]").split("%", 1)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


def _refuse(what: str) -> NetworkBlocked:
    message = f"{BLOCKED_MARK}: {what} (only loopback addresses are allowed)"
    print(message, file=sys.stderr, flush=True)
    return NetworkBlocked(message)


def _target_host(target: str) -> str:
    """The host of a gRPC target: `dns:///host:443`, `host:443`, `[::1]:50051`, `ipv4:1.2.3.4:5`."""
    rest = target.split("///", 1)[-1]
    for scheme in ("dns:", "ipv4:", "ipv6:", "unix:"):
        rest = rest.removeprefix(scheme)
    if rest.startswith("["):
        return rest[1 : rest.index("]")]
    return rest.rsplit(":", 1)[0] if rest.count(":") == 1 else rest


def block_network() -> Callable[[], None]:
    """Refuses every non-loopback connection and lookup in this process (see the module doc).

    Returns a function that lifts the block again (for a test module that
    blocks the pytest process itself for a while).
    """
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not is_loopback(str(address[0])):
            raise _refuse(f"connection to {address[0]}:{address[1]}")

    def connect(self: socket.socket, address: Any) -> None:
        check(self, address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(self, address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        # Names are looked up nowhere but on this machine; an address needs no
        # lookup, and connect() checks it.
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and not is_loopback(str(name)) and not _is_address(str(name)):
            raise _refuse(f"name lookup of {name}")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo
    unblock_grpc = _block_grpc()

    def unblock() -> None:
        socket.socket.connect = real_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = real_connect_ex  # type: ignore[method-assign]
        socket.getaddrinfo = real_getaddrinfo
        unblock_grpc()

    return unblock


def _block_grpc() -> Callable[[], None]:
    import grpc  # noqa: PLC0415

    real_secure, real_insecure = grpc.secure_channel, grpc.insecure_channel

    class Refused(grpc.RpcError):
        """What a call on a blocked channel raises: a finished, failed call, as gRPC's own.

        Google's clients read code() and details(); gRPC's interceptors take
        the error for the call's outcome and ask it for result().
        """

        def __init__(self, target: str, method: str) -> None:
            super().__init__(f"{BLOCKED_MARK}: gRPC call {method} to {target}")
            self._details = str(self)

        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.PERMISSION_DENIED

        def details(self) -> str:
            return self._details

        def result(self, timeout: float | None = None) -> Any:
            raise self

        def exception(self, timeout: float | None = None) -> BaseException:
            return self

        def traceback(self, timeout: float | None = None) -> Any:
            return self.__traceback__

        def initial_metadata(self) -> tuple:
            return ()

        def trailing_metadata(self) -> tuple:
            return ()

        def add_done_callback(self, callback: Any) -> None:
            callback(self)

        def done(self) -> bool:
            return True

        def running(self) -> bool:
            return False

        def cancelled(self) -> bool:
            return False

        def cancel(self) -> bool:
            return False

        def is_active(self) -> bool:
            return False

        def time_remaining(self) -> float | None:
            return None

    class Call:
        def __init__(self, target: str, method: str) -> None:
            self._target, self._method = target, method

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            _refuse(f"gRPC call {self._method} to {self._target}")
            raise Refused(self._target, self._method)

        with_call = future = __call__

    class BlockedChannel(grpc.Channel):
        def __init__(self, target: str) -> None:
            self._target = target

        def _call(self, method: str, *args: Any, **kwargs: Any) -> Call:
            return Call(self._target, method)

        unary_unary = unary_stream = stream_unary = stream_stream = _call

        def subscribe(self, callback: Any, try_to_connect: bool = False) -> None:
            pass

        def unsubscribe(self, callback: Any) -> None:
            pass

        def close(self) -> None:
            pass

        def __enter__(self) -> "BlockedChannel":
            return self

        def __exit__(self, *exc: Any) -> None:
            pass

    def guarded(real: Any) -> Any:
        def channel(target: str, *args: Any, **kwargs: Any) -> Any:
            if is_loopback(_target_host(target)):
                return real(target, *args, **kwargs)
            return BlockedChannel(target)

        return channel

    grpc.secure_channel = guarded(real_secure)
    grpc.insecure_channel = guarded(real_insecure)

    def unblock() -> None:
        grpc.secure_channel, grpc.insecure_channel = real_secure, real_insecure

    return unblock


def closed_port() -> int:
    """A loopback TCP port that nothing listens on (connections to it are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def offline_env(storage_emulator: str | None = None) -> dict[str, str]:
    """Environment of a guarded child: Google's metadata server on a closed port, UTC."""
    metadata = f"127.0.0.1:{closed_port()}"
    env = {
        **os.environ,
        "TZ": "UTC",
        "NO_GCE_CHECK": "true",
        "GCE_METADATA_HOST": metadata,
        "GCE_METADATA_IP": metadata,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    if storage_emulator:
        env["STORAGE_EMULATOR_HOST"] = storage_emulator
    return env


# The child's first lines: the guard, then no Google credential lookup (Beam
# would retry it for ~20 s before going anonymous; BEAM_NOTES 10).
_PRELUDE = (
    "import sys\n"
    f"sys.path.insert(0, {str(TESTS)!r})\n"
    "import offline\n"
    "offline.block_network()\n"
    "from apache_beam.internal.gcp import auth\n"
    "auth._Credentials._credentials_init = True\n"
    "auth._Credentials._credentials = None\n"
)


def run_offline(
    code: str, *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Runs Python `code` with `args` in a guarded child process (cwd: the repository)."""
    return subprocess.run(
        [sys.executable, "-c", _PRELUDE + code, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env if env is not None else offline_env(),
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )


CLI = "from pipeline.cli import process_main\nsys.exit(process_main())\n"
