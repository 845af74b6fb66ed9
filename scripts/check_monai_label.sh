#!/usr/bin/env bash
# MONAI Label check: a separate environment with monailabel 0.8.5 and its pins (requirements-label.txt; it needs
# pydicom < 3, the project pydicom 3), the project's own packages reused through a path entry, then the MONAI Label
# tests: `monailabel start_server` with the packaged bundle's app (monai_label_app/), a real `/infer` call on a
# NIfTI volume, float32 HU, geometry and values checked against the network.
#
#   bash scripts/check_monai_label.sh [ENV_DIR]      # default /tmp/ldct_labelenv; about 2 minutes to install
#
# Run it from the repository root with the project's environment (.venv) set up as in the README. The same
# environment serves the bundle by hand:
#   python scripts/package_bundle.py /tmp/ldct_bundle
#   ENV_DIR/bin/python -m monailabel.main start_server --app /tmp/ldct_bundle/monai_label_app --studies VOLUMES_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
env_dir="${1:-/tmp/ldct_labelenv}"
project_site="$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"

python3 -m venv "$env_dir"
"$env_dir/bin/pip" install -q --no-deps monailabel==0.8.5 pydicom-seg==0.4.1
"$env_dir/bin/pip" install -q -r requirements-label.txt
# numpy must be the project's (torch and scipy there are built against it)
"$env_dir/bin/pip" uninstall -q -y numpy 2>/dev/null || true
env_site="$("$env_dir/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
# after the environment's own packages: its pydicom 2.4 comes first, torch, MONAI, timm, ... from the project
echo "$project_site" > "$env_site/zz_ldct_project.pth"

"$env_dir/bin/python" -m pytest -q -p no:cacheprovider tests/deploy/test_monai_label.py
