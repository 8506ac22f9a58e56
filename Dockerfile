# ses-proxy container image: SMTP on 2525, /metrics /healthz /readyz on 9101.
#
# BASE_IMAGE: in real use the default, python:3.11-slim-bookworm (or an equivalent
# Debian bookworm image with python3 + venv, pinned by digest in your registry). The
# test build here has no registry, so deploy/container/build-and-run.sh passes
# BASE_IMAGE=localhost/ses-proxy-base:bookworm, a debootstrapped stand-in made by
# deploy/container/make-local-base.sh. Both stages must use the same base: the venv's
# python is a symlink to the base's interpreter.
#
# Runtime contract:
#   config   mount a file at /etc/ses-proxy/config.yaml; override any key with
#            SES_PROXY_<SECTION>__<KEY> env vars. In a container set smtp.host and
#            metrics.host to 0.0.0.0 (or the pod IP) and restrict who connects with
#            smtp.allowed_networks plus a NetworkPolicy / firewall.
#   user     UID/GID 10001, no shell login, nothing owned by it outside /var/lib/ses-proxy.
#   rootfs   runs with a read-only root filesystem: it writes nothing but logs to
#            stderr. The outbox backend (local testing only) writes to
#            /var/lib/ses-proxy/outbox: mount a volume there.
#   stop     SIGTERM drains for smtp.shutdown_grace_seconds (25 s by default): give the
#            runtime a longer stop timeout (docker/compose 30 s, k8s grace period 35 s).
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1
RUN python3 -m venv /opt/ses-proxy
WORKDIR /src
# Only what the wheel needs (see .dockerignore): tests and deploy files stay out.
COPY pyproject.toml README.md constraints.txt ./
COPY proxy ./proxy
# Byte-compiled at install time (pip's default), so nothing is written at run time;
# pip and setuptools are removed: the final image installs nothing.
RUN /opt/ses-proxy/bin/pip install -c constraints.txt . \
 && /opt/ses-proxy/bin/pip uninstall --yes pip setuptools \
 && /opt/ses-proxy/bin/ses-proxy --help >/dev/null

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="ses-proxy" \
      org.opencontainers.image.description="Credential-safe SMTP to Amazon SES relay" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/ses-proxy/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=builder /opt/ses-proxy /opt/ses-proxy
# A numeric user so that runAsNonRoot can verify it without /etc/passwd lookups.
RUN mkdir -p /etc/ses-proxy /var/lib/ses-proxy/outbox \
 && chown 10001:10001 /var/lib/ses-proxy /var/lib/ses-proxy/outbox \
 && chmod 0750 /var/lib/ses-proxy /var/lib/ses-proxy/outbox
USER 10001:10001
# The working directory: the outbox backend's default ./outbox lands on the volume
# mounted at /var/lib/ses-proxy/outbox (no env default here: env would override the
# config file's outbox_dir).
WORKDIR /var/lib/ses-proxy
EXPOSE 2525 9101
STOPSIGNAL SIGTERM
# No curl in the image: python's urllib asks /healthz (liveness, not readiness: a
# container waiting for its first credential is alive). The port follows
# SES_PROXY_METRICS__PORT when that overrides the config.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('SES_PROXY_METRICS__PORT', '9101'), timeout=4)"]
ENTRYPOINT ["ses-proxy"]
CMD ["serve", "-c", "/etc/ses-proxy/config.yaml"]
