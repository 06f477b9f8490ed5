"""The pin file: names that are safe as cache paths and image tags, one-line errors for a file
that is not a text pin file, and $ZMQLAB_PINS to use another one."""
from __future__ import annotations

import pytest

from lab import targets
from lab.errors import LabError

SHA = "0" * 64


def pins(name="pyzmq-1.0", file="pyzmq-1.0-py3-none-any.whl") -> str:
    return (f'[[target]]\nname = "{name}"\nkind = "wheel"\npyzmq = "1.0"\nlibzmq = "4.3.4"\n'
            f'draft = false\nsuite = "bookworm"\npython = "3.11"\n'
            f'[[target.artifact]]\nfile = "{file}"\nsha256 = "{SHA}"\n')


def test_the_shipped_pin_file_passes():
    assert len(targets.load_targets()) >= 1


@pytest.mark.parametrize("name", ["..", ".", "../x", "a/b", "/abs", ".hidden", "-flag", "a..b", "a b",
                                  "x" * 129, "", "pyzmq\\25", "名前"])
def test_unsafe_target_names_are_refused(name):
    with pytest.raises(LabError) as err:
        targets.parse_pins(pins(name=name.replace("\\", "\\\\")))
    assert "not allowed" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["pyzmq-25.1.2", "libzmq-4.3.4-draft", "debian_bookworm.system", "A1"])
def test_safe_target_names_pass(name):
    assert targets.parse_pins(pins(name=name))[0].name == name


@pytest.mark.parametrize("file", ["../evil.whl", "..", "a/b.whl", ".hidden.whl", "x..whl"])
def test_unsafe_artifact_files_are_refused(file):
    with pytest.raises(LabError, match="not allowed"):
        targets.parse_pins(pins(file=file))


def test_debian_file_names_pass():
    assert targets.parse_pins(pins(file="libpgm-5.3-0_5.3.128~dfsg-2+b1_amd64.deb"))


def test_a_binary_pin_file_is_one_line(tmp_path):
    path = tmp_path / "pins.toml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe garbage")
    with pytest.raises(LabError) as err:
        targets.load_targets(path)
    assert "not a text" in str(err.value) and "\n" not in str(err.value)


def test_a_pin_file_with_nul_bytes_is_one_line(tmp_path):
    path = tmp_path / "pins.toml"
    path.write_bytes(b"[[target]]\x00\n")
    with pytest.raises(LabError, match="NUL"):
        targets.load_targets(path)


def test_garbage_text_is_one_line(tmp_path):
    path = tmp_path / "pins.toml"
    path.write_text("this is = = not toml [[")
    with pytest.raises(LabError) as err:
        targets.load_targets(path)
    assert "malformed" in str(err.value) and "\n" not in str(err.value)


def test_zmqlab_pins_names_another_pin_file(tmp_path, monkeypatch):
    path = tmp_path / "mine.toml"
    path.write_text(pins(name="only-one"))
    monkeypatch.setenv("ZMQLAB_PINS", str(path))
    assert [t.name for t in targets.load_targets()] == ["only-one"]
    monkeypatch.setenv("ZMQLAB_PINS", str(tmp_path / "missing.toml"))
    with pytest.raises(LabError, match="cannot read pin file"):
        targets.load_targets()
