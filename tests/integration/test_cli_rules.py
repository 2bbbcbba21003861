"""`redflag rules`: validate files with the functions' own model, and push/diff/pull them to SSM
(moto standing in for an AWS account) and to a running `redflag serve`."""

import json

import boto3
import pytest
import yaml
from moto import mock_aws
from typer.testing import CliRunner

from redflag.kinds import Rule
from redflag_local.cli import app
from redflag_local.ops.rules_files import RULES_DIR, load_rules
from redflag_local.ops.rules_sync import SsmRuleStore, diff_rules, pull, push

runner = CliRunner()
WIDE = {"COLUMNS": "200"}
PAGE = {"label": "creating a landing page", "threshold_seconds": 900, "expected_seconds": 600}
MAIL = {"label": "creating an email template", "threshold_seconds": 600, "severity": "critical"}


def rules(*args):
    return runner.invoke(app, ["rules", *args], env=WIDE)


def write(folder, **files):
    folder.mkdir(parents=True, exist_ok=True)
    for task, data in files.items():
        (folder / f"{task}.yaml").write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return folder


def test_validate_the_seed_rules():
    result = rules("validate", "--rules-dir", str(RULES_DIR))
    assert result.exit_code == 0, result.output
    assert "all valid" in result.output


def test_validate_names_file_field_and_reason(tmp_path):
    write(
        tmp_path,
        good=PAGE,
        bad={"label": "x", "threshold_seconds": 0},
        worse={"label": "x", "threshold_seconds": 60, "expected_seconds": 90, "notify": ["sms"]},
        typo={"label": "x", "threshold_second": 60},
        broken="label: [unclosed\n",
    )
    (tmp_path / "Not A Task.yaml").write_text(yaml.safe_dump(PAGE))
    result = rules("validate", "--rules-dir", str(tmp_path))
    assert result.exit_code == 1
    out = result.output
    assert f"{tmp_path / 'bad.yaml'}: threshold_seconds: Input should be greater than 0" in out
    assert f"{tmp_path / 'worse.yaml'}: notify.0: Input should be 'user', 'cs' or 'webhook'" in out
    assert f"{tmp_path / 'typo.yaml'}: threshold_second: Extra inputs are not permitted" in out
    assert f"{tmp_path / 'typo.yaml'}: threshold_seconds: Field required" in out
    assert f"{tmp_path / 'broken.yaml'}: (yaml):" in out
    assert f"{tmp_path / 'Not A Task.yaml'}: (file name):" in out
    assert "good.yaml" not in out


def test_a_task_defined_twice_is_a_problem(tmp_path):
    write(tmp_path, page=PAGE)
    (tmp_path / "page.yml").write_text(yaml.safe_dump(PAGE))
    result = rules("validate", "--rules-dir", str(tmp_path))
    assert result.exit_code == 1 and "also defined in page.yaml" in result.output


def test_list_is_a_table(tmp_path):
    result = rules("list", "--rules-dir", str(RULES_DIR))
    assert result.exit_code == 0
    assert "create_landing_page" in result.output and "900 s" in result.output and "user,cs" in result.output


@pytest.fixture
def ssm():
    with mock_aws():
        yield boto3.client("ssm", region_name="us-east-1")


def test_push_diff_pull_round_trip_on_ssm(ssm, tmp_path):
    local = write(tmp_path / "rules", create_landing_page=PAGE, create_email_template=MAIL)
    aws = ["--region", "us-east-1", "--rules-dir"]
    ssm.put_parameter(Name="/redflag/rules/old_task", Value=json.dumps(PAGE), Type="String")

    result = rules("diff", *aws, str(local))
    assert result.exit_code == 0, result.output
    assert "+ create_email_template: would be added" in result.output
    assert "- old_task: only in SSM" in result.output

    result = rules("push", *aws, str(local))
    assert result.exit_code == 0, result.output
    stored = {p["Name"]: p["Value"] for p in ssm.get_parameters_by_path(Path="/redflag/rules")["Parameters"]}
    assert Rule.model_validate_json(stored["/redflag/rules/create_email_template"]).severity == "critical"
    assert "/redflag/rules/old_task" in stored  # kept without --prune

    assert "0 unchanged" not in rules("diff", *aws, str(local)).output
    assert "2 unchanged" in rules("diff", *aws, str(local)).output

    write(local, create_landing_page=PAGE | {"threshold_seconds": 1200, "segments": ["trial"]})
    result = rules("diff", *aws, str(local))
    assert "~ create_landing_page: would change" in result.output
    assert "threshold_seconds: 900 -> 1200" in result.output
    assert 'segments: (absent) -> ["trial"]' in result.output

    result = rules("push", *aws, str(local), "--prune")
    assert result.exit_code == 0 and "- old_task: deleted" in result.output
    names = {p["Name"] for p in ssm.get_parameters_by_path(Path="/redflag/rules")["Parameters"]}
    assert names == {"/redflag/rules/create_landing_page", "/redflag/rules/create_email_template"}

    pulled = tmp_path / "pulled"
    result = rules("pull", *aws, str(pulled))
    assert result.exit_code == 0, result.output
    assert load_rules(pulled) == load_rules(local)
    assert "0 written, 2 unchanged" in rules("pull", *aws, str(pulled)).output  # nothing to do twice


def test_invalid_rules_are_never_pushed(ssm, tmp_path):
    local = write(tmp_path, create_landing_page=PAGE, bad={"label": "x", "threshold_seconds": -5})
    result = rules("push", "--region", "us-east-1", "--rules-dir", str(local))
    assert result.exit_code == 1
    assert "bad.yaml: threshold_seconds: Input should be greater than 0" in result.output
    assert "nothing was sent" in result.output
    assert ssm.get_parameters_by_path(Path="/redflag/rules")["Parameters"] == []


def test_pull_skips_invalid_rules_in_ssm(ssm, tmp_path):
    ssm.put_parameter(Name="/redflag/rules/good", Value=json.dumps(PAGE), Type="String")
    ssm.put_parameter(Name="/redflag/rules/broken", Value='{"label": "x"}', Type="String")
    store = SsmRuleStore(ssm, "/redflag/rules")
    report = pull(store, tmp_path)
    assert [p.name for p in report.written] == ["good.yaml"]
    assert report.skipped == [("broken", "threshold_seconds: Field required")]
    write(tmp_path, broken=MAIL)  # a valid local rule for the task that is broken in SSM: push fixes it
    changes = {c.task: c for c in diff_rules(load_rules(tmp_path)[0], store.read())}
    assert changes["good"].kind == "unchanged" and changes["broken"].kind == "changed"
    assert changes["broken"].fields[0].field == "(invalid in store)"
    push(store, load_rules(tmp_path)[0])
    assert Rule.model_validate_json(store.read()["broken"]) == Rule.model_validate(MAIL)


def test_a_custom_rules_path(ssm, tmp_path):
    local = write(tmp_path, create_landing_page=PAGE)
    result = rules("push", "--region", "us-east-1", "--rules-dir", str(local), "--rules-path", "/acme/rf")
    assert result.exit_code == 0, result.output
    assert ssm.get_parameter(Name="/acme/rf/create_landing_page")["Parameter"]["Value"]
    assert rules("push", "--region", "us-east-1", "--rules-path", "no-slash").exit_code == 2


def test_push_diff_pull_against_the_local_server(served, tmp_path):
    local = write(tmp_path / "rules", pushed_task={"label": "a pushed task", "threshold_seconds": 3600})
    endpoint = ["--endpoint", served.url, "--rules-dir"]

    result = rules("diff", *endpoint, str(local))
    assert result.exit_code == 0, result.output
    assert "+ pushed_task: would be added" in result.output and "local server" in result.output

    assert rules("push", *endpoint, str(local)).exit_code == 0
    assert "1 unchanged" in rules("diff", *endpoint, str(local)).output
    # the server's ingest handler sees the new rule at once
    status, out, _ = served.post({"type": "task_started", "task": "pushed_task", "user_id": "u-rules-1"})
    assert status == 202 and out["results"][0]["status"] == "armed"

    pulled = tmp_path / "pulled"
    result = rules("pull", *endpoint, str(pulled))
    assert result.exit_code == 0, result.output
    assert load_rules(pulled)[0]["pushed_task"] == load_rules(local)[0]["pushed_task"]

    status, out, _ = served.post(b'{"label": "x", "threshold_seconds": 0}', path="/local/rules/bad", method="PUT")
    assert (status, out) == (422, {"message": "threshold_seconds: Input should be greater than 0"})


def test_no_local_server_is_a_clear_error(tmp_path):
    result = rules("diff", "--endpoint", "http://127.0.0.1:9", "--rules-dir", str(RULES_DIR))
    assert result.exit_code == 1 and "no local Red Flag server at http://127.0.0.1:9" in result.output


def test_preview_prints_the_rendered_email_of_a_rule(tmp_path):
    template = {
        "subject": "{first_name}, {task_label}?",
        "text": "Hi {first_name}, {elapsed} on {task_label}. {help_url}",
        "html": "<p>Hi <b>{first_name}</b></p>",
    }
    page = {"label": "pages & forms", "threshold_seconds": 600, "help_url": "https://h.example/p", "email": template}
    weekly = {"label": "weekly", "kind": "usage_drop", "drop_percent": 50, "notify": ["cs"]}
    write(tmp_path, page=page | {"max_failures": 2}, quiet=weekly)

    def preview(*args):
        return runner.invoke(app, ["preview", *args, "--rules-dir", str(tmp_path)], env=WIDE)

    out = preview("page", "--name", "<b>Bo</b> Z", "--html")
    assert out.exit_code == 0, out.output
    assert "Subject: <b>Bo</b>, pages & forms?" in out.output  # a subject is text: encoded in the header, not escaped
    assert "Hi <b>Bo</b>, 10 minutes on pages & forms. https://h.example/p" in out.output
    assert "<p>Hi <b>&lt;b&gt;Bo&lt;/b&gt;</b></p>" in out.output  # the HTML part escapes the name
    failures = preview("page", "--failures")
    assert failures.exit_code == 0 and "Subject: Ada, pages & forms?" in failures.output
    assert preview("quiet").output.startswith("quiet: a usage_drop")
    missing = preview("nope")
    assert missing.exit_code == 1 and "no rule 'nope'" in missing.output
