"""The proof the reaper needs: a call that is over and an id its own journal never got."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hostfactory_aws import answers, records

ROOT = Path(__file__).resolve().parents[2]


def test_a_record_is_provably_unanswered_only_with_its_own_journal(tmp_path: Path) -> None:
    path = str(tmp_path / "p-state.json")
    token = answers.token(path, create=True)
    assert token and answers.token(path, create=True) == token  # one journal per state
    rec = records.new_create("T", 1, "RunInstances", 0.0, token)
    assert answers.never_answered(rec, answers.journaled(path), True, "req-1")
    answers.mark(path, "req-1")
    assert not answers.never_answered(rec, answers.journaled(path), True, "req-1")
    assert not answers.never_answered(rec, answers.journaled(path), None, "req-2")
    assert not answers.never_answered(rec, answers.journaled(path), False, "req-2")
    foreign = {**rec, "journal": "another"}  # a restored or foreign state
    assert not answers.never_answered(foreign, answers.journaled(path), True, "req-2")
    os.unlink(answers.journal_path(path))  # a lost journal: doubt
    assert not answers.never_answered(rec, answers.journaled(path), True, "req-2")


def test_a_call_lock_is_free_only_once_its_process_is_gone(tmp_path: Path) -> None:
    path = str(tmp_path / "p-state.json")
    assert answers.call_over(path, "req-9") is None  # no lock file: proves nothing
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from hostfactory_aws import answers; "
         "answers.hold(sys.argv[1], 'req-9'); print('held', flush=True); time.sleep(60)",
         path], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert answers.call_over(path, "req-9") is False
    finally:
        holder.kill()
        holder.wait()
    assert answers.call_over(path, "req-9") is True
