"""``tidings sequences …`` driven as a person drives it (S5-S7): preview a file before any
database exists, import and export files, read the statistics, and get line-numbered errors."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.test_cli_and_serve import env, tidings

__all__ = ["env"]  # the fixture, shared with the other command-line tests

WELCOME = Path(__file__).parents[2] / "examples" / "sequences" / "welcome.yaml"


def test_preview_prints_each_message_with_its_time_and_branch(env: dict[str, str]) -> None:
    reader = tidings(
        env,
        "sequences", "preview", str(WELCOME),
        "--behaviour", "reads everything",
        "--start", "2026-11-24T10:00:00+08:00",
        "--timezone", "Asia/Taipei",
    )  # fmt: skip
    assert reader.returncode == 0, reader.stderr
    assert "No database yet" in reader.stdout  # nothing needs `init` to try a file
    lines = reader.stdout.splitlines()
    sent = [line for line in lines if " message " in line]
    assert [line.split("│")[2].strip() for line in sent] == ["welcome", "tips", "offer"]
    assert "Tue 2026-11-24 10:00" in sent[0] and "Wed 2026-11-25 10:00" in sent[1]
    assert "took yes" in reader.stdout and "3 messages; completed" in reader.stdout

    ignorer = tidings(env, "sequences", "preview", str(WELCOME), "-b", "opens nothing")
    assert ignorer.returncode == 0, ignorer.stderr
    assert "took no" in ignorer.stdout and "tips_reminder" in ignorer.stdout
    assert "first_order_offer" not in ignorer.stdout


def test_import_export_round_trip_and_statistics(env: dict[str, str], tmp_path: Path) -> None:
    assert tidings(env, "init").returncode == 0
    imported = tidings(env, "sequences", "import", str(WELCOME))
    assert imported.returncode == 0, imported.stderr
    assert "Imported Welcome series as draft #1" in imported.stdout
    carrying = tmp_path / "carrying.yaml"
    carrying.write_text(
        WELCOME.read_text(encoding="utf-8")
        + "templates:\n- name: tips\n  language: en\n  category: utility\n"
        + "  components: [{type: BODY, text: Three tips for you}]\n",
        encoding="utf-8",
    )
    waiting = tidings(env, "sequences", "import", str(carrying), "--name", "Carrying")
    assert waiting.returncode == 0, waiting.stderr
    assert "no WhatsApp number yet" in waiting.stderr and "tips [en]" in waiting.stderr

    first = tmp_path / "first.yaml"
    assert tidings(env, "sequences", "export", "welcome series", str(first)).returncode == 0
    copied = tidings(env, "sequences", "import", str(first), "--name", "Copy")
    assert copied.returncode == 0, copied.stderr
    second = tmp_path / "second.yaml"
    assert tidings(env, "sequences", "export", "3", str(second)).returncode == 0
    assert second.read_text() == first.read_text().replace("Welcome series", "Copy")

    as_json = tmp_path / "copy.json"
    assert tidings(env, "sequences", "export", "Copy", str(as_json)).returncode == 0
    assert as_json.read_text().startswith("{\n")

    listed = tidings(env, "sequences", "list")
    assert all(name in listed.stdout for name in ("Welcome series", "Carrying", "Copy"))
    stats = tidings(env, "sequences", "stats", "Welcome series")
    assert stats.returncode == 0, stats.stderr
    assert all(step in stats.stdout for step in ("welcome", "read-tips", "reminder"))
    assert "entered" in stats.stdout and "converted" in stats.stdout


def test_errors_name_the_file_line_and_field(env: dict[str, str], tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "name: Broken\nsteps:\n- id: first\n  type: wait\n  duration: three days\n",
        encoding="utf-8",
    )
    for command in ("preview", "import"):
        if command == "import":
            assert tidings(env, "init").returncode == 0
        answer = tidings(env, "sequences", command, str(broken))
        assert answer.returncode == 2
        assert "broken.yaml: line 5" in answer.stderr and "steps[0].duration" in answer.stderr
        assert "Traceback" not in answer.stderr

    unknown = tidings(env, "sequences", "preview", str(WELCOME), "-b", "dances")
    assert unknown.returncode == 2 and "behaviours[0]" in unknown.stderr
    zone = tidings(env, "sequences", "preview", str(WELCOME), "--timezone", "Mars/Olympus")
    assert zone.returncode == 2 and "--timezone" in zone.stderr
    missing = tidings(env, "sequences", "export", "Nothing", str(tmp_path / "x.yaml"))
    assert missing.returncode == 2 and "no sequence named 'Nothing'" in missing.stderr
    listed = tidings(env, "sequences", "list")
    assert listed.returncode == 0 and "version" in listed.stdout, listed.stderr  # the header
    assert listed.stdout.count("│") == 0  # and no row: nothing half-imported
