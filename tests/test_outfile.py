"""envcheck.outfile: the one writer of every output file (atomic, fsync, 0644, regular files only)."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from envcheck import outfile


def test_atomic_write_replaces_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "envcheck.prom"
    target.write_text("old\n")
    outfile.write_text(target, "new\n")
    assert target.read_text() == "new\n"
    assert os.listdir(tmp_path) == ["envcheck.prom"]
    assert (target.stat().st_mode & 0o777) == 0o644


def test_atomic_write_failure_keeps_the_old_file_and_cleans_up(tmp_path, monkeypatch):
    target = tmp_path / "envcheck.prom"
    target.write_text("old\n")

    def fail(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        outfile.write_text(target, "new\n")
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["envcheck.prom"]


def test_reader_never_sees_a_partial_file(tmp_path):
    target = tmp_path / "m.prom"
    big = [("# " + str(i) + "x" * 200_000 + "\n") for i in range(2)]
    outfile.write_text(target, big[0])
    seen, stop = set(), threading.Event()

    def reader():
        while not stop.is_set():
            seen.add(len(target.read_text()))
    t = threading.Thread(target=reader)
    t.start()
    for i in range(30):
        outfile.write_text(target, big[i % 2])
    stop.set()
    t.join()
    assert seen <= {len(big[0]), len(big[1])}


def test_write_atomic_replaces_whole_files(tmp_path):
    path = tmp_path / "r.json"
    outfile.write_text(str(path), "one")
    outfile.write_text(str(path), "two")
    assert path.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_a_symlink_at_the_final_path_is_refused_and_its_target_untouched(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    link = tmp_path / "out.json"
    link.symlink_to(victim)
    with pytest.raises(outfile.OutputError, match="symbolic link"):
        outfile.write_text(link, "new\n")
    assert victim.read_text() == "precious\n" and link.is_symlink()
    assert sorted(os.listdir(tmp_path)) == ["out.json", "victim"]


@pytest.mark.parametrize("path", ["/dev/null", "/dev/full"])
def test_a_device_is_never_replaced(path):
    before = os.stat(path)
    with pytest.raises(outfile.OutputError, match="not a regular file"):
        outfile.check(path)
    with pytest.raises(outfile.OutputError):
        outfile.write_text(path, "x")
    assert stat.S_ISCHR(os.stat(path).st_mode) and os.stat(path).st_ino == before.st_ino


def test_a_fifo_or_folder_is_refused_and_a_missing_folder_named(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(outfile.OutputError, match="not a regular file"):
        outfile.check(fifo)
    with pytest.raises(outfile.OutputError, match="not a regular file"):
        outfile.check(tmp_path)
    with pytest.raises(outfile.OutputError, match="does not exist"):
        outfile.check(tmp_path / "nope" / "r.json")


def test_new_file_is_0644_whatever_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        outfile.write_text(tmp_path / "r.json", "{}")
    finally:
        os.umask(old)
    assert (os.stat(tmp_path / "r.json").st_mode & 0o777) == 0o644
