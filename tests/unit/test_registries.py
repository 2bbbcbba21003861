"""Both registries, walked: every kind of red flag and every channel is documented, has a sample event
and is wired in the template; nothing outside a kind's or a channel's own module names it."""

import ast
import json
import re
from pathlib import Path

import pytest
import yaml

from redflag import channels, kinds
from redflag.kinds import Rule

ROOT = Path(__file__).parents[2]
TEMPLATE = yaml.load((ROOT / "template.yaml").read_text(), Loader=yaml.BaseLoader)  # tags (!Ref) read as text
EVERY_CHANNEL = {**channels.REGISTRY, **channels.DOWNSTREAM}


def headings(page: str) -> list[str]:
    return [line.lower() for line in (ROOT / page).read_text().splitlines() if line.startswith("#")]


def documented(doc: str, name: str) -> bool:
    """A heading of the page names it (as code, or in words)."""
    words = {f"`{name}`", name.replace("_", " ")}
    return any(any(w in h for w in words) for h in headings(doc.split("#")[0]))


def module_of(thing: object) -> str:
    return type(thing).__module__.rsplit(".", 1)[-1]


@pytest.mark.parametrize("name", sorted(kinds.REGISTRY))
def test_each_kind_is_documented_sampled_and_raised_by_a_resource_of_the_template(name):
    kind = kinds.get(name)
    assert documented(kind.doc, name), f"{kind.doc} has no section on {name}"
    assert (ROOT / kind.sample_event).is_file()
    json.loads((ROOT / kind.sample_event).read_text())
    assert kind.raised_by in TEMPLATE["Resources"], kind.raised_by
    assert set(kind.reasons), "a kind names the reasons its red flags carry"
    assert all(kinds.by_reason(r.value) is kind for r in kind.reasons)
    if kind.configurable:
        seed = yaml.safe_load((ROOT / kind.sample_rule).read_text())
        assert Rule.model_validate(seed).kind == name, f"{kind.sample_rule} is not a {name} rule"
    else:
        assert kind.sample_rule is None
        with pytest.raises(ValueError, match="kind"):
            Rule(kind=name, label="x", threshold_seconds=60)


@pytest.mark.parametrize("name", sorted(EVERY_CHANNEL))
def test_each_channel_is_documented_sampled_and_delivered_by_a_resource_of_the_template(name):
    channel = EVERY_CHANNEL[name]
    assert documented(channel.doc, module_of(channel)) or documented(channel.doc, name), channel.doc
    assert (ROOT / channel.sample_event).is_file()
    assert channel.delivered_by in TEMPLATE["Resources"], channel.delivered_by


def test_every_channel_a_rule_can_notify_has_an_adapter_in_the_composition_root():
    wiring = ast.parse((ROOT / "layers/redflag/redflag/edge/wiring.py").read_text())
    built = next(
        n.value for n in ast.walk(wiring) if isinstance(n, ast.AnnAssign) and getattr(n.target, "id", "") == "senders"
    )
    assert isinstance(built, ast.Dict)
    assert {k.value for k in built.keys if isinstance(k, ast.Constant)} == set(channels.REGISTRY)
    notify = Rule.model_fields["notify"].annotation.__args__[0].__args__  # list[Literal[...]]
    assert set(notify) == set(channels.REGISTRY)


def test_no_module_outside_a_kind_or_a_channel_branches_on_its_name():
    """``== "usage_drop"``, ``kind == "task"`` and the like live only in the kind's own module."""
    names = set(kinds.REGISTRY)
    alternatives = "|".join(sorted(names))
    pattern = re.compile(rf"""(kind|reason)\s*(==|!=|in)\s*\(?["']({alternatives})["']""")
    own = {ROOT / "layers/redflag/redflag/kinds" / f"{module_of(k)}.py" for k in kinds.REGISTRY.values()}
    searched = [p for folder in ("layers", "functions", "local") for p in (ROOT / folder).rglob("*.py")]
    found = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in searched if p not in own
             for m in pattern.finditer(p.read_text())]  # fmt: skip
    assert found == []
