"""An offline page template for `dvc plots show`.

DVC's default page loads vega, vega-lite and vega-embed from a CDN, so without a network its
per-epoch CSV plots render empty. `python -m smec.infra.dvcplots PATH` writes a template with the
three libraries inlined (vl-convert's own bundle, from the installed package: no network), and
`.dvc/config` names it as `plots.html_template`. `make` writes it when it sets up the venv.
"""

from __future__ import annotations

import sys
from pathlib import Path

from smec.infra import atomic

VEGA_LITE = "5.20"  # DVC's plot templates declare the vega-lite v5 schema

PAGE = """<!DOCTYPE html>
<html>
<head>
  <meta charset="utf-8">
  <title>DVC plots (offline)</title>
  <script type="text/javascript">
{bundle}
  </script>
  <style>
    body {{ font-family: sans-serif; }}
    table {{ border-spacing: 15px; }}
    img {{ max-width: 100%; height: auto; }}
  </style>
</head>
<body>
{{plot_divs}}
</body>
</html>
"""


def template() -> str:
    """The page: DVC fills `{plot_divs}`; there is no `{scripts}`, so no CDN tags are added."""
    import vl_convert

    return PAGE.format(bundle=vl_convert.javascript_bundle(vl_version=VEGA_LITE))


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise SystemExit("usage: python -m smec.infra.dvcplots PATH")
    atomic.write_text(Path(argv[0]), template())


if __name__ == "__main__":
    main(sys.argv[1:])
