"""The job store's file and its folder are private to voiceq's user, even under a permissive umask."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from voiceq.jobs import new_job, new_job_id
from voiceq.store.sqlite import SQLiteJobStore


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_sqlite_file_and_data_dir_are_created_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        data = tmp_path / "data"
        store = SQLiteJobStore(data / "jobs.sqlite3")
        store.create(new_job(job_id=new_job_id(), user_id="u", voice_name="v", sample_text="Hi.",
                             audio_key="uploads/x.wav", audio_seconds=2.0, now=1.0))
    finally:
        os.umask(old)
    assert mode(data) == 0o700
    files = [p for p in data.iterdir() if p.name.startswith("jobs.sqlite3")]
    assert files and all(mode(p) == 0o600 for p in files), {p.name: oct(mode(p)) for p in files}


def test_an_existing_world_readable_store_is_tightened(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    (data / "jobs.sqlite3").touch(mode=0o644)
    os.chmod(data / "jobs.sqlite3", 0o644)
    SQLiteJobStore(data / "jobs.sqlite3")
    assert (mode(data), mode(data / "jobs.sqlite3")) == (0o700, 0o600)
