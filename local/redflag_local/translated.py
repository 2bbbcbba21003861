"""template.yaml as CloudFormation deploys it: through the SAM transform (aws-sam-translator, the library
behind ``AWS::Serverless-2016-10-31``), so that checkov also scans what SAM generates (the implicit API, its
stage and usage plan, each function's role and permissions), not only what we wrote.

    python -m redflag_local.translated --out translated.json      # stdout without --out

Local ``CodeUri``/``ContentUri`` folders become placeholder S3 URIs, as ``sam package`` would make them (the
transform accepts nothing else). Each SAM resource's ``Metadata`` (its checkov skips, each with its reason) is
passed on to every resource generated from it, so a suppression is written once, in template.yaml.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PLACEHOLDER_BUCKET = "s3://redflag-package-placeholder"  # never read: the scan needs a URI, not the code


class _BundledManagedPolicies:
    """Managed policy names resolve from the map the translator bundles; nothing is looked up in IAM."""

    def load(self) -> dict[str, str]:
        return {}


def translate(path: Path = ROOT / "template.yaml") -> dict[str, Any]:
    from samtranslator.translator.transform import transform
    from samtranslator.yaml_helper import yaml_parse

    # the transform fills AWS::Region/AWS::Partition from a boto3 session; offline, it has to be told one
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    sam = yaml_parse(path.read_text())
    for resource in sam["Resources"].values():
        props = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str) and not props[key].startswith("s3://"):
                props[key] = f"{PLACEHOLDER_BUCKET}/{props[key].strip('/')}"
    return transform(sam, {}, _BundledManagedPolicies(), passthrough_metadata=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template", type=Path, default=ROOT / "template.yaml")
    parser.add_argument("--out", type=Path, help="write the CloudFormation JSON here (default: stdout)")
    args = parser.parse_args(argv)
    text = json.dumps(translate(args.template), indent=1, sort_keys=True)
    if args.out:
        args.out.write_text(text + "\n")
    else:
        sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
