"""Build ``templates/dvc_plots_offline.html``: DVC's plots page with vega, vega-lite
and vega-embed inlined, so ``dvc plots show --html-template
templates/dvc_plots_offline.html`` renders without network access.

The versions are the ones DVC's default page loads from a CDN (dvc-render's
``VegaRenderer.SCRIPTS``). The libraries come from the npm registry via
``npm pack``; run this again only to change versions::

    python templates/build_offline_template.py
"""

import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGES = {
    "vega": ("5.20.2", "build/vega.min.js"),
    "vega-lite": ("5.2.0", "build/vega-lite.min.js"),
    "vega-embed": ("6.18.2", "build/vega-embed.min.js"),
}
OUT = Path(__file__).resolve().parent / "dvc_plots_offline.html"

PAGE = """<!DOCTYPE html>
<html>
<head>
    {{refresh_tag}}
    <meta charset="utf-8">
    <title>DVC Plot</title>
    <!-- Self-contained template for `dvc plots show/diff --html-template`: the scripts
         below are inlined, so the page needs no network. Built by
         templates/build_offline_template.py from {versions}.
{licenses}
    -->
{scripts}
    <style>
        table {{
            border-spacing: 15px;
        }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""


def main() -> None:
    scripts, licenses, versions = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        specs = [f"{name}@{version}" for name, (version, _) in PACKAGES.items()]
        subprocess.run(["npm", "pack", "--silent", *specs], cwd=tmp, check=True)
        for name, (version, member) in PACKAGES.items():
            with tarfile.open(Path(tmp) / f"{name}-{version}.tgz") as archive:
                js = archive.extractfile(f"package/{member}").read().decode("utf-8")
                license_text = archive.extractfile("package/LICENSE").read().decode("utf-8")
            # Drop the source-map comment (the map is not shipped).
            js = "\n".join(
                line for line in js.splitlines() if not line.startswith("//# sourceMappingURL=")
            )
            for placeholder in ("{plot_divs}", "{scripts}", "{refresh_tag}", "</script"):
                if placeholder in js:
                    sys.exit(f"{name}: contains {placeholder!r}; cannot be inlined as is")
            scripts.append(f"    <script>/* {name} {version} */\n{js}\n    </script>")
            licenses.append(
                f"\n    {name} {version} license:\n\n" + license_text.replace("--", "-")
            )
            versions.append(f"{name} {version}")
    page = PAGE.format(
        versions=", ".join(versions), licenses="".join(licenses), scripts="\n".join(scripts)
    )
    OUT.write_text(page, encoding="utf-8")
    print(f"wrote {OUT} ({len(page.encode()) // 1024} KiB)")


if __name__ == "__main__":
    main()
