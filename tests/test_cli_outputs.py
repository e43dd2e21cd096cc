"""Where the commands may write (auditor/cli_outputs.py).

Outputs are regular files only, new or existing, or standard output (``-``); a device, directory,
FIFO, socket or a symbolic link to one is refused with one line and exit status 2, and left as it
was. No output may be an input (compared by identity too: a hard link, another spelling), and no two
outputs may be one file. Every check comes before any work. Everything is built in tmp_path: the
real /dev is only ever the target of a symbolic link, and is checked to be untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from auditor.cli_audit import EXIT_BAD_INPUT, EXIT_OK
from auditor.cli_outputs import OutputError, Protected, check_output, check_outputs, write_atomic
from tests.capture_factory import write_pcap
from tests.test_cli_audit import (
    CLIENT,
    ROOT,
    STOREFRONT,
    TINY_ROLES,
    assert_one_error_line,
    handshake,
    invoke,
    leftovers,
    run_cli,
    sha256,
)

RULES = ROOT / "rules"


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, Path]:
    """A capture of one expected flow, and its roles (in a folder of their own)."""
    folder = tmp_path / "in"
    folder.mkdir()
    cap = write_pcap(folder / "tiny.pcap", handshake(CLIENT, STOREFRONT, 50000, 443))
    roles = folder / "tiny.roles.yaml"
    roles.write_text(TINY_ROLES, encoding="utf-8")
    return cap, roles


@pytest.fixture
def work(tiny: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """The tiny capture and its roles, with tmp_path as the working folder."""
    monkeypatch.chdir(tmp_path)
    return tiny


def audit(work: tuple[Path, Path], *args: str | Path) -> tuple[int, str, str]:
    cap, roles = work
    result = invoke([cap, "--roles", roles, "-q", *args])
    return result.exit_code, result.stdout, result.stderr


def refused(work: tuple[Path, Path], *args: str | Path) -> str:
    """Run an audit that must be refused: exit 2, one line, nothing written. Returns the line."""
    code, out, err = audit(work, *args)
    assert code == EXIT_BAD_INPUT, err
    assert out == ""
    return assert_one_error_line(err)


# --- what an output may be --------------------------------------------------------------------------


def test_a_fifo_is_refused_and_left_a_fifo(work: tuple[Path, Path], tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    message = refused(work, "-o", "pipe", "--json", "a.json")
    assert message.startswith("pcap-audit: error: pipe: ") and "FIFO" in message, message
    assert stat.S_ISFIFO(os.lstat(tmp_path / "pipe").st_mode)
    assert not (tmp_path / "a.json").exists()
    assert leftovers(tmp_path) == []


def test_a_symlink_to_a_device_is_refused_and_the_device_untouched(work: tuple[Path, Path], tmp_path: Path) -> None:
    (tmp_path / "null").symlink_to("/dev/null")
    before = os.stat("/dev/null")
    for option in ("-o", "--json", "--csv"):
        message = refused(work, option, "null", *(["--no-html"] if option != "-o" else []))
        assert "null: is a symbolic link to a character device (/dev/null)" in message, message
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)
    assert os.readlink(tmp_path / "null") == "/dev/null"
    assert leftovers(tmp_path) == []


def test_a_symlink_to_a_fifo_is_refused(work: tuple[Path, Path], tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "link").symlink_to("pipe")
    message = refused(work, "--json", "link")
    assert "link: is a symbolic link to a FIFO" in message, message
    assert os.readlink(tmp_path / "link") == "pipe" and stat.S_ISFIFO(os.lstat(tmp_path / "pipe").st_mode)


@pytest.mark.parametrize("through_link", [False, True])
def test_a_directory_is_refused(work: tuple[Path, Path], tmp_path: Path, through_link: bool) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "inside").write_text("kept")
    name = "folder"
    if through_link:
        (tmp_path / "to-folder").symlink_to("folder")
        name = "to-folder"
    message = refused(work, "-o", name)
    assert f"{name}: is " in message and "directory" in message, message
    assert [p.name for p in (tmp_path / "folder").iterdir()] == ["inside"]
    assert leftovers(tmp_path) == []


def test_a_socket_is_refused(work: tuple[Path, Path], tmp_path: Path) -> None:
    import socket

    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind("sock")
        message = refused(work, "--csv", "sock")
    assert "sock: is a socket" in message, message


def test_a_dangling_symlink_is_refused(work: tuple[Path, Path], tmp_path: Path) -> None:
    (tmp_path / "report.html").symlink_to(tmp_path / "nowhere" / "report.html")
    message = refused(work, "-o", "report.html")
    assert "symbolic link to a missing file" in message, message
    assert not (tmp_path / "nowhere").exists()


def test_a_symlink_to_a_regular_file_writes_the_target_and_keeps_the_link(work: tuple[Path, Path],
                                                                         tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    target = tmp_path / "site" / "report.html"
    target.write_text("yesterday")
    (tmp_path / "report.html").symlink_to("site/report.html")
    code, _, err = audit(work, "-o", "report.html")
    assert code == EXIT_OK, err
    assert os.readlink(tmp_path / "report.html") == "site/report.html"
    assert "<html" in target.read_text(encoding="utf-8")
    assert leftovers(tmp_path) == []


def test_an_existing_regular_file_is_replaced(work: tuple[Path, Path], tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("old")
    code, _, err = audit(work, "--no-html", "--json", "a.json")
    assert code == EXIT_OK, err
    assert json.loads((tmp_path / "a.json").read_text(encoding="utf-8"))["summary"]["flows"] == 1


def test_a_file_in_the_path_is_not_a_directory(work: tuple[Path, Path], tmp_path: Path) -> None:
    (tmp_path / "existing_file").write_text("x")
    for name in ("existing_file/r.html", "existing_file/deeper/r.html"):
        message = refused(work, "-o", name)
        assert message == f"pcap-audit: error: {name}: existing_file is not a directory", message
    assert (tmp_path / "existing_file").read_text() == "x"


def test_missing_folders_are_made(work: tuple[Path, Path], tmp_path: Path) -> None:
    code, _, err = audit(work, "-o", "new/deeper/r.html")
    assert code == EXIT_OK, err
    assert (tmp_path / "new" / "deeper" / "r.html").is_file()


def test_an_output_name_of_255_bytes(work: tuple[Path, Path], tmp_path: Path) -> None:
    # The longest name a file system takes: the temporary file beside it must fit too.
    name = "r" * 250 + ".json"
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / name).write_text("old")  # replacing one needs the backup name to fit as well
    code, _, err = audit(work, "--no-html", "--json", name, "--csv", f"old/{name}")
    assert code == EXIT_OK, err
    assert json.loads((tmp_path / name).read_text(encoding="utf-8"))["summary"]["flows"] == 1
    assert (tmp_path / "old" / name).read_text(encoding="utf-8").startswith("classification,")
    assert leftovers(tmp_path) == [] and not list(tmp_path.rglob(".pa-*"))
    message = refused(work, "--json", "r" * 256)
    assert "File name too long" in message, message


# --- no two outputs in one file -------------------------------------------------------------------


@pytest.mark.parametrize(("first", "second"), [
    ("x.out", "x.out"),
    ("x.out", "./x.out"),
    ("x.out", "sub/../x.out"),
    ("x.out", "LINKED/x.out"),  # a symbolic link to this folder
    ("sub/new.out", "LINKED/sub/new.out"),  # a file that does not exist yet
    ("x.out", "HARDLINK"),  # another name of the same file
])
def test_two_outputs_in_one_file_are_refused(work: tuple[Path, Path], tmp_path: Path, first: str, second: str) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "x.out").write_text("old")
    os.link(tmp_path / "x.out", tmp_path / "HARDLINK")
    (tmp_path / "LINKED").symlink_to(tmp_path)
    message = refused(work, "-o", first, "--json", second)
    assert "is the same file as" in message and "-o and --json" in message, message
    assert (tmp_path / "x.out").read_text() == "old"
    assert not (tmp_path / "sub" / "new.out").exists()
    assert leftovers(tmp_path) == []


def test_three_different_outputs_are_fine(work: tuple[Path, Path], tmp_path: Path) -> None:
    code, _, err = audit(work, "-o", "x.html", "--json", "x.json", "--csv", "sub/x.csv")
    assert code == EXIT_OK, err
    assert sorted(p.name for p in tmp_path.rglob("x.*")) == ["x.csv", "x.html", "x.json"]


# --- inputs are never outputs ------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink", "spelling"])
@pytest.mark.parametrize("which", ["capture", "roles", "rules"])
def test_an_input_is_never_an_output(work: tuple[Path, Path], tmp_path: Path, how: str, which: str) -> None:
    cap, roles = work
    site = tmp_path / "site.yaml"
    site.write_text("product: Site\nrules: []\n")
    victim = {"capture": cap, "roles": roles, "rules": site}[which]
    name = {"same": str(victim), "symlink": "link.html", "hardlink": "hard.html",
            "spelling": f"{victim.parent}/./{victim.name}"}[how]
    if how == "symlink":
        (tmp_path / "link.html").symlink_to(victim)
    if how == "hardlink":
        os.link(victim, tmp_path / "hard.html")
    before = sha256(victim)
    message = refused(work, "--rules", site, "-o", name)
    assert "inputs are never overwritten" in message and victim.name in message, message
    assert sha256(victim) == before


@pytest.fixture
def catalog_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "catalog"
    shutil.copytree(RULES, folder)
    return folder


@pytest.mark.parametrize("name", ["catalog/cvad.yaml", "catalog/supplement/cloud.yaml", "catalog/roles.yaml",
                                  "HARDLINK"])
def test_a_file_of_the_catalog_folder_is_never_an_output(work: tuple[Path, Path], tmp_path: Path, catalog_copy: Path,
                                                         name: str) -> None:
    os.link(catalog_copy / "storefront.yaml", tmp_path / "HARDLINK")
    before = {p: sha256(p) for p in catalog_copy.rglob("*") if p.is_file()}
    message = refused(work, "--rules-dir", catalog_copy, "--json", name)
    assert "a file of the catalog folder" in message, message
    assert {p: sha256(p) for p in catalog_copy.rglob("*") if p.is_file()} == before
    # The next run still reads the catalog.
    code, _, err = audit(work, "--rules-dir", catalog_copy, "--no-html")
    assert code == EXIT_OK, err


def test_a_new_yaml_output_in_the_catalog_folder_is_refused(work: tuple[Path, Path], catalog_copy: Path) -> None:
    # The next run would read it as a rule file, and fail.
    message = refused(work, "--rules-dir", catalog_copy, "--json", "catalog/audit.yaml")
    assert "would be read as part of the catalog folder" in message, message
    assert not (catalog_copy / "audit.yaml").exists()
    code, _, err = audit(work, "--rules-dir", catalog_copy, "-o", "catalog/report.html")
    assert code == EXIT_OK, err


def test_the_bundled_catalog_and_templates_are_never_outputs(work: tuple[Path, Path], tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # Without --rules-dir the bundled catalog is read (in a source checkout: rules/ itself). Copies
    # stand in for it here, so that a regression cannot write into the checkout.
    from auditor import resources

    rules, templates = tmp_path / "bundled-rules", tmp_path / "bundled-templates"
    shutil.copytree(resources.rules_dir(), rules)
    shutil.copytree(resources.templates_dir(), templates)
    monkeypatch.setattr(resources, "rules_dir", lambda: rules)
    monkeypatch.setattr(resources, "templates_dir", lambda: templates)
    for victim in (rules / "cvad.yaml", next(p for p in sorted(templates.iterdir()) if p.is_file())):
        before = sha256(victim)
        message = refused(work, "--csv", victim)
        assert "inputs are never overwritten" in message, message
        assert sha256(victim) == before


def test_outputs_are_checked_before_any_work(work: tuple[Path, Path], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import auditor.audit

    def no_audit(request: object) -> None:
        raise AssertionError("the audit ran before its outputs were checked")

    monkeypatch.setattr(auditor.audit, "run_audit", no_audit)
    os.mkfifo(tmp_path / "pipe")
    message = refused(work, "-o", "report.html", "--json", "pipe")
    assert "pipe: is a FIFO" in message, message
    assert not (tmp_path / "report.html").exists()


# --- standard output ------------------------------------------------------------------------------


def test_dash_writes_an_output_to_standard_output(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    cap, roles = tiny
    proc = run_cli([cap, "--roles", roles, "--no-html", "--json", "-", "--csv", "a.csv"], tmp_path)
    assert proc.returncode == EXIT_OK, proc.stderr.decode()
    doc = json.loads(proc.stdout)  # only the JSON: the summary went to standard error
    assert doc["summary"]["flows"] == 1
    assert "wrote standard output" in proc.stderr.decode() and "wrote a.csv" in proc.stderr.decode()
    assert (tmp_path / "a.csv").is_file()


def test_dash_to_a_file_named_as_another_output_is_refused(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    cap, roles = tiny
    with open(tmp_path / "both.out", "wb") as fh:
        proc = run_cli([cap, "--roles", roles, "-o", "both.out", "--json", "-"], tmp_path, stdout=fh)
    assert proc.returncode == EXIT_BAD_INPUT
    message = assert_one_error_line(proc.stderr.decode())
    assert "is the same file as" in message, message


def test_two_outputs_on_standard_output_are_refused(work: tuple[Path, Path]) -> None:
    message = refused(work, "-o", "-", "--json", "-")
    assert "standard output" in message and "-o and --json" in message, message


# --- catalog export -o --------------------------------------------------------------------------------


def export(*args: str | Path) -> tuple[int, str]:
    from click.testing import CliRunner

    from auditor.cli import main

    result = CliRunner().invoke(main, ["catalog", *map(str, args)])
    return result.exit_code, result.stderr


def test_catalog_export_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "null").symlink_to("/dev/null")
    (tmp_path / "dir").mkdir()
    for name, why in (("pipe", "FIFO"), ("null", "character device"), ("dir", "directory")):
        code, err = export("export", "-o", tmp_path / name)
        assert code == EXIT_BAD_INPUT, err
        assert len(err.splitlines()) == 1 and why in err, err
    assert stat.S_ISFIFO(os.lstat(tmp_path / "pipe").st_mode) and stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert leftovers(tmp_path) == []


def test_catalog_export_never_overwrites_the_catalog(catalog_copy: Path) -> None:
    before = sha256(catalog_copy / "cvad.yaml")
    code, err = export("--rules-dir", catalog_copy, "export", "-o", catalog_copy / "cvad.yaml")
    assert code == EXIT_BAD_INPUT and "a file of the catalog folder" in err, err
    assert sha256(catalog_copy / "cvad.yaml") == before


def test_catalog_export_writes_through_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "real.csv").write_text("old")
    (tmp_path / "link.csv").symlink_to("real.csv")
    code, err = export("export", "-o", tmp_path / "link.csv")
    assert code == EXIT_OK, err
    assert os.readlink(tmp_path / "link.csv") == "real.csv"
    assert (tmp_path / "real.csv").read_text().startswith("id,product,")


# --- write_atomic itself ---------------------------------------------------------------------------------


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def test_an_output_that_became_a_fifo_during_the_audit_is_left_alone(in_tmp: Path) -> None:
    (in_tmp / "a.json").write_text("old")
    outputs = check_outputs([("--json", "a.json"), ("--csv", "b.csv")], Protected())

    def meanwhile() -> str:
        (in_tmp / "a.json").unlink()
        os.mkfifo(in_tmp / "a.json")
        return "new"

    with pytest.raises(OutputError, match=r"a\.json: is now a FIFO"):
        write_atomic([(outputs[0], meanwhile), (outputs[1], lambda: "b")])
    assert stat.S_ISFIFO(os.lstat(in_tmp / "a.json").st_mode)
    assert not (in_tmp / "b.csv").exists()
    assert not list(in_tmp.glob(".pa-*"))


@pytest.mark.parametrize("phase", ["producing", "committing"])
def test_a_stop_while_writing_leaves_every_output_as_it_was(in_tmp: Path, phase: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # A stop signal raises Stopped in this process: while it writes the last output (the others
    # are written by forked processes meanwhile), or between putting one output in place and the next.
    from auditor import cli_outputs
    from auditor.cli_signals import Stopped

    names = ["a.json", "b.csv", "c.html"]
    for name in names:
        (in_tmp / name).write_text(f"old {name}")
    outputs = check_outputs([("--json", names[0]), ("--csv", names[1]), ("-o", names[2])], Protected())

    def last() -> str:
        if phase == "producing":
            raise Stopped(15)
        return "new"

    if phase == "committing":
        real = cli_outputs._keep_previous
        calls: list[str] = []

        def keep(out: cli_outputs.Output) -> Path | None:
            calls.append(out.given)
            if len(calls) == 2:
                assert (in_tmp / calls[0]).read_text() == "new"  # the first one is in place
                raise Stopped(15)
            return real(out)

        monkeypatch.setattr(cli_outputs, "_keep_previous", keep)
    with pytest.raises(Stopped):
        write_atomic([(outputs[0], lambda: "new"), (outputs[1], lambda: "new"), (outputs[2], last)])
    assert {name: (in_tmp / name).read_text() for name in names} == {name: f"old {name}" for name in names}
    assert not list(in_tmp.glob(".pa-*"))


def test_check_output_names_the_problem(in_tmp: Path) -> None:
    assert check_output("-o", "-").path is None
    assert check_output("-o", "new.html").path == in_tmp.resolve() / "new.html"
    with pytest.raises(OutputError, match="ends with a slash"):
        check_output("-o", "folder/")
    with pytest.raises(OutputError, match="empty file name"):
        check_output("-o", "")
    with pytest.raises(OutputError, match="No such file or directory"):
        check_output("-o", "missing/x.csv", make_folders=False)
