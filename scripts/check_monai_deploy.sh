#!/usr/bin/env bash
# MONAI Deploy check: a separate environment with the App SDK (installed next to MONAI it would be imported by
# every `import monai`), the project's own packages reused through a path entry, then the Deploy tests: the
# application from the repository and from the packaged bundle, on a 3-slice DICOM series, HU and geometry checked.
#
#   bash scripts/check_monai_deploy.sh [ENV_DIR]      # default /tmp/ldct_deployenv; about 1 minute to install
#
# Run it from the repository root with the project's environment (.venv) set up as in the README.
set -euo pipefail
cd "$(dirname "$0")/.."
env_dir="${1:-/tmp/ldct_deployenv}"
project_site="$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"

python3 -m venv "$env_dir"
# the SDK, Holoscan (CPU is enough; cupy and holoscan-cli are not needed to run an application) and the few
# packages the SDK imports that the project does not have
"$env_dir/bin/pip" install -q --no-deps monai=="$(.venv/bin/python -c 'import monai; print(monai.__version__)')" \
    monai-deploy-app-sdk==4.0.0 holoscan-cu13==4.6.0 wheel-axle-runtime highdicom pyjpegls
"$env_dir/bin/pip" install -q "tritonclient[http,grpc]" typeguard colorama cloudpickle
# torch, pydicom, timm, pytest, ... from the project's environment; processed before Holoscan's own .pth file,
# which needs filelock from there. The environment's own monai (with monai.deploy) stays first on the path.
env_site="$("$env_dir/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$project_site" > "$env_site/00_ldct_project.pth"

ulimit -s 32768 || true  # Holoscan warns below 32 MB of stack
PYTHONPATH="$PWD" "$env_dir/bin/python" -m pytest -q -p no:cacheprovider tests/deploy/test_monai_deploy.py
