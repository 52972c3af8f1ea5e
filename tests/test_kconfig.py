import pytest

from harness.errors import UsageError
from harness.kernel.kconfig import mismatches, parse_fragment, parse_fragment_text, requested, verify


def test_parse_forms():
    text = ('# comment\n\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=n\nCONFIG_D=0x10\n'
            'CONFIG_E="a b"\nCONFIG_F=-3\nCONFIG_G=m\n')
    got = {s.symbol: (s.value, s.origin) for s in parse_fragment_text(text, "f.config")}
    assert got == {
        "CONFIG_A": ("y", "f.config:3"), "CONFIG_B": ("n", "f.config:4"), "CONFIG_C": ("n", "f.config:5"),
        "CONFIG_D": ("0x10", "f.config:6"), "CONFIG_E": ('"a b"', "f.config:7"), "CONFIG_F": ("-3", "f.config:8"),
        "CONFIG_G": ("m", "f.config:9"),
    }


@pytest.mark.parametrize("line", ["CONFIG_A = y", "CONFIG_A=yes", "A=y", "CONFIG_A", 'CONFIG_S="unterminated',
                                  "CONFIG_A=y y"])
def test_malformed_line_names_file_and_line(line):
    with pytest.raises(UsageError) as e:
        parse_fragment_text(f"CONFIG_OK=y\n{line}\n", "frag.config")
    msg = str(e.value)
    assert msg.startswith("frag.config:2: malformed Kconfig line") and "expected CONFIG_NAME=" in msg
    assert "\n" not in msg


def test_missing_fragment(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        parse_fragment(tmp_path / "nope.config")


def test_later_fragment_wins():
    a = parse_fragment_text("CONFIG_X=y\nCONFIG_Y=y\n", "a")
    b = parse_fragment_text("# CONFIG_X is not set\n", "b")
    want = requested([a, b])
    assert want["CONFIG_X"].value == "n" and want["CONFIG_X"].origin == "b:1"
    assert want["CONFIG_Y"].value == "y"


DOTCONFIG = """\
CONFIG_A=y
# CONFIG_B is not set
CONFIG_D=0x10
CONFIG_E="a b"
CONFIG_N=8
"""


def test_verification_holds():
    want = requested([parse_fragment_text(
        'CONFIG_A=y\nCONFIG_B=n\n# CONFIG_ABSENT is not set\nCONFIG_D=0X10\nCONFIG_E="a b"\nCONFIG_N=8\n', "f")])
    assert mismatches(want, DOTCONFIG) == []


def test_verification_names_symbol_asked_and_got(tmp_path):
    want = requested([parse_fragment_text("CONFIG_A=n\nCONFIG_B=y\nCONFIG_MISSING=y\nCONFIG_N=4\n", "frag")])
    bad = mismatches(want, DOTCONFIG)
    assert bad == [
        "CONFIG_A asked n (frag:1), got y",
        "CONFIG_B asked y (frag:2), got n",
        "CONFIG_MISSING asked y (frag:3), got unset",
        "CONFIG_N asked 4 (frag:4), got 8",
    ]
    cfg = tmp_path / ".config"
    cfg.write_text(DOTCONFIG)
    with pytest.raises(UsageError) as e:
        verify(want, cfg)
    assert "CONFIG_MISSING asked y (frag:3), got unset" in str(e.value) and "\n" not in str(e.value)


def test_repo_fragments_parse(repo_root):
    frags = sorted((repo_root / "kernel-configs").glob("*.config"))
    assert frags
    want = requested([parse_fragment(f) for f in frags])
    assert want["CONFIG_DEBUG_VM"].value == "y"
