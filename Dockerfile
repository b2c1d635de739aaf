# Cloud Import Prep: one image that is both the Dataflow Flex Template launcher and the Dataflow
# worker (sdk_container_image), so launch and workers always run the same code and the same Beam.
# Targets:
#   dataflow (default)  docker build -t IMAGE .                  Flex Template + worker image
#   local               docker build --target local -t prep .    the CLI as a non-root user
# Pattern: GoogleCloudPlatform/python-docs-samples dataflow/flex-templates/pipeline_with_dependencies.

# Beam of the image = Beam pinned in pyproject.toml (tests/test_deployment.py checks it): a
# launcher/worker Beam mismatch is the most common launch failure. Python 3.11 in both images.
# For reproducible builds also pin digests, e.g. `…sdk:${BEAM_VERSION}@sha256:<digest>` (from
# `docker buildx imagetools inspect apache/beam_python3.11_sdk:<BEAM_VERSION>`).
ARG BEAM_VERSION=2.77.0
# Launcher binary release. Google's list of tags (cloud.google.com/dataflow/docs/reference/
# flex-templates-base-images) marks the newest reviewed release "(latest)": 20260122_RC00 in the
# newest copy of that page we could read (January 2026, seen in its Java table; the launcher
# images of all languages have been released under the same date tags). 20230622_RC00, pinned
# before, missed two and a half years of security fixes. No image registry is reachable from
# here or from CI, so the build is what proves the tag exists (it fails at once if not); before
# a release, check with
#   gcloud container images list-tags gcr.io/dataflow-templates-base/python311-template-launcher-base
# and take the one tagged latest. Only the launcher binary is taken from this image.
ARG LAUNCHER_TAG=20260122_RC00

# Only a source for the Flex Template launcher binary, copied into the image below.
FROM gcr.io/dataflow-templates-base/python311-template-launcher-base:${LAUNCHER_TAG} AS launcher

# Beam's own SDK image: the worker boot entrypoint, Python 3.11 and Beam with its GCP extras.
FROM apache/beam_python3.11_sdk:${BEAM_VERSION} AS base
# Re-declared so this stage sees the value given before the first FROM.
ARG BEAM_VERSION
# Beam reads GCS/S3 modification times with time.mktime: only UTC gives true upload times.
ENV TZ=UTC
# The sources are only needed to install the package, so they live outside the image's paths.
COPY pyproject.toml setup.py README.md constraints.txt /tmp/src/
COPY pipeline/ /tmp/src/pipeline/
COPY transforms/ /tmp/src/transforms/
# Install the project as a package, with every dependency at the version the test suite ran
# with (constraints.txt, checked against pyproject.toml by tests/test_deployment.py). Workers
# import the pipeline's functions from this package: Beam 2.77 turns save_main_session on for
# Dataflow (with its default pickler, cloudpickle), but that only stages Beam's own type
# registries, not the launcher's __main__; nothing is downloaded at launch. Then fail the build
# if pip changed Beam or left a broken dependency set, or if the schema's C tally was not built
# (setup.py: optional where there is no compiler; Beam's SDK image has one).
RUN pip install --no-cache-dir -c /tmp/src/constraints.txt /tmp/src \
    && rm -rf /tmp/src \
    && pip check \
    && python -c "import transforms._tally" \
    && python -c "import sys, apache_beam as b; sys.exit(None if b.__version__ == '${BEAM_VERSION}' else 'Beam ' + b.__version__ + ' is not ${BEAM_VERSION}')" \
    && cloud-import-prep --help > /dev/null

# Local runs: the CLI as an unprivileged user; mount data and pass flags, e.g.
#   docker run --rm -v "$PWD:/data" prep --input '/data/raw/*' --output /data/out
FROM base AS local
# A fixed high UID keeps it apart from host users; -l avoids a huge lastlog file for that UID.
RUN useradd --create-home --no-log-init --uid 10001 --user-group prep
# Everything from here on, and the container itself, runs without root (numeric, so that
# Kubernetes' runAsNonRoot can verify it).
USER 10001:10001
# A writable working directory for the unprivileged user.
WORKDIR /home/prep
# The container is the command: arguments go straight to the CLI.
ENTRYPOINT ["cloud-import-prep"]
# Without arguments, show the options rather than fail on a missing --input.
CMD ["--help"]

# Dataflow: the default (last) target. Workers run as root here, as Dataflow expects.
FROM base AS dataflow
# The Flex Template launcher, at the path Dataflow runs it from.
COPY --from=launcher /opt/google/dataflow/python_template_launcher /opt/google/dataflow/python_template_launcher
# The file the launcher runs: template parameters -> a non-blocking `cloud-import-prep` call.
COPY scheduling/flex_template_main.py /template/flex_template_main.py
# No FLEX_TEMPLATE_PYTHON_REQUIREMENTS_FILE / SETUP_FILE: all is installed, so launch is quick.
ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/template/flex_template_main.py
# Beam's worker boot program, so that Dataflow can use the image as sdk_container_image.
ENTRYPOINT ["/opt/apache/beam/boot"]
