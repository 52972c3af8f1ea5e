"""SerialChannel: what it sends and how it reads results back, without a guest."""

import base64
import re

import pytest

from harness.guest.channels import ChannelError, CommandResult
from harness.guest.channels import serial as channel
from harness.guest.channels.serial import SerialChannel, command_lines, parse_result

NONCE = "0123456789ab"


def framed(output: bytes, status=0, timed_out=0, nonce=NONCE) -> bytes:
    """What ks-run prints (with the tty's \\r\\n)."""
    b64 = base64.encodebytes(output).replace(b"\n", b"\r\n")
    return (f"KS:{nonce}:B {status} {timed_out} {len(output)}\r\n".encode() + b64)


def test_command_lines_are_short_and_carry_the_command():
    cmd = "echo 'quotes \" and $vars' ; " + "x" * 20000
    lines = command_lines(cmd, NONCE, 12.5, heartbeat=7)
    assert max(len(ln) for ln in lines) < 1024  # far under the tty's 4096-byte line limit
    assert lines[-1].endswith(f"{channel.KS_RUN} {NONCE} 13 7")
    b64 = "".join(ln.split()[1].split(">>")[0] for ln in lines[:-1])
    assert base64.b64decode(b64).decode() == cmd
    assert all(NONCE in ln for ln in lines)


def test_markers_never_appear_literally_in_what_is_sent():
    # If the tty ever echoed our input, the echo must not fake a result.
    text = "\n".join(command_lines("echo hi", NONCE, 5))
    for m in (f"KS:{NONCE}:B", f"KS:{NONCE}:E", f"KS:{NONCE}:H"):
        assert m not in text


def test_parse_plain():
    st, to, out, intact = parse_result(b"# # " + framed(b"hello\n", status=3), NONCE)
    assert (st, to, out, intact) == (3, False, "hello\n", True)


def test_parse_strips_printk_heartbeats_and_noise():
    payload = b"".join(b"line %d with [brackets] and KS:markers\n" % i for i in range(40))
    body = framed(payload, status=0)
    head, tail = body[:130], body[130:]
    # A printk cuts into the middle of a base64 line, another one stands
    # alone, and a heartbeat line slips in: none may reach the output.
    noisy = (head + b"[   12.345678][  T123] migrate: something happened\r\n"
             + b"KS:" + NONCE.encode() + b":H\r\n" + tail[:50]
             + b"[   13.000001][    C1] rcu: INFO: rcu_preempt self-detected stall on CPU\r\n" + tail[50:])
    st, to, out, intact = parse_result(b"# " + noisy, NONCE)
    assert out == payload.decode() and intact


def test_parse_keeps_printk_like_text_in_the_output_itself():
    dmesg = b"[    1.000000][    T1] Run /init as init process\n"
    assert parse_result(framed(dmesg), NONCE)[2] == dmesg.decode()


def test_parse_detects_garbage_and_missing_header():
    bad = framed(b"abcdef") .replace(b"YWJj", b"YWJjZGVmZ2hp")
    assert parse_result(bad, NONCE)[3] is False
    with pytest.raises(ChannelError):
        parse_result(b"no header here", NONCE)


def test_parse_timeout_flag():
    assert parse_result(framed(b"", status=137, timed_out=1), NONCE)[:2] == (137, True)


class FakePort:
    """Plays the guest's shell: answers each ks-run line with a canned result."""

    def __init__(self, outputs):
        self.outputs = list(outputs)
        self.sent = b""
        self.pending = b""

    def send(self, data):
        self.sent += data
        for ln in data.decode().splitlines():
            if ln.startswith("printf 'KS:%s:"):
                tag = re.search(r"KS:%s:(\w+)", ln).group(1)
                self.pending += f"# KS:{ln.split()[-1]}:{tag}\r\n".encode()
            elif channel.KS_RUN in ln:
                nonce = ln.split()[-3]
                out = self.outputs.pop(0)
                if out is not None:
                    self.pending += framed(out[0], status=out[1], nonce=nonce) + f"KS:{nonce}:E\r\n".encode()

    def expect(self, pattern, timeout):
        m = pattern.search(self.pending)
        if not m:
            return None
        before, self.pending = self.pending[:m.start()], self.pending[m.end():]
        return before, m


def test_serial_channel_run_and_read_file():
    port = FakePort([(b"hi\n", 0), (b"MemTotal: 1\n", 0), (b"", 1), (b"cat: x: No such file\n", 1)])
    ch = SerialChannel(port)
    r = ch.run("echo hi", 10)
    assert isinstance(r, CommandResult) and (r.exit_status, r.output, r.timed_out) == (0, "hi\n", False)
    assert ch.read_file("/proc/meminfo") == "MemTotal: 1\n"
    assert ch.run("false", 10).exit_status == 1
    with pytest.raises(ChannelError, match="cannot read /x"):
        ch.read_file("/x")


def test_long_command_is_sent_in_acknowledged_batches():
    port = FakePort([(b"ok\n", 0)])
    r = SerialChannel(port).run("echo " + "y" * 30000, 10)
    assert r.output == "ok\n"
    assert port.sent.count(b":A") >= 4  # 30 kB in batches of BATCH lines


def test_lost_result_times_out_then_resyncs():
    port = FakePort([None, (b"back\n", 0)])
    ch = SerialChannel(port, grace=0)
    r = ch.run("sleep 100", 1)
    assert r.timed_out and r.exit_status is None
    assert ch.run("echo back", 10).output == "back\n"
    assert b"\x03" in port.sent  # interrupted the stuck shell before going on


def test_markers_survive_a_printk_cutting_into_them():
    pk = b"[  100.000001][  T321] page:00000000 refcount:1 mapcount:0\r\n"
    end = channel.marker_re(f"KS:{NONCE}:E")
    assert end.search(b"# KS:" + NONCE.encode() + b":E\r\n")
    assert end.search(b"KS:" + NONCE.encode()[:5] + pk + pk + NONCE.encode()[5:] + b":E\r\n")
    assert not end.search(b"KS:" + NONCE.encode() + b":B 0 0 1\r\n")
    head = framed(b"xyz\n", status=5)
    cut = head[:9] + pk + head[9:]
    assert parse_result(cut, NONCE)[:3] == (5, False, "xyz\n")
