# A threshold-signing appliance node: the `appliance` package, SoftHSM2, a non-root user.
#
#   docker build -t threshold-appliance .
#   docker compose up            # three nodes, see docker-compose.yml
#
# A node's state (node.toml, cluster.toml, TLS key and certificate, the SoftHSM2 token
# directory and its PIN file, node.db, audit.db, metrics.token; directories 0700, files
# 0600) lives in one directory on a volume (/data/node by
# default). softhsm2.conf names its token directory by absolute path, so mount a node's
# volume at the same path for `appliance init` and `appliance serve`:
#   docker run --rm -v n1:/data/node threshold-appliance init --dir /data/node --node-id node-1 \
#          --listen 0.0.0.0:8443 --url https://node-1:8443 --host node-1
#   (collect node-info.json of every node, `appliance cluster-config`, put cluster.toml next
#    to each node.toml), then: docker run -v n1:/data/node -p 8443:8443 threshold-appliance

# ---- build: wheels for the package and its dependencies (compilers stay here) ----------
FROM python:3.11-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential libgmp-dev libmpfr-dev libmpc-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY appliance ./appliance
COPY hsm ./hsm
COPY api ./api
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# ---- run ---------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends softhsm2 libgmp10 libmpfr6 libmpc3 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 appliance \
 && useradd --system --uid 10001 --gid appliance --home-dir /data --shell /usr/sbin/nologin appliance \
 && mkdir -p /data/node /data/node-1 /data/node-2 /data/node-3 /data/users \
 && chown -R appliance:appliance /data && chmod 0750 /data
COPY --from=build /wheels /wheels
RUN pip install --no-index --find-links=/wheels threshold-appliance && rm -rf /wheels
COPY softhsm-config /opt/appliance/softhsm-config

USER appliance
WORKDIR /data
# a node's state, token directory included, belongs on a volume (docker-compose.yml mounts
# one named volume per node at /data/node-N instead)
VOLUME ["/data/node"]
EXPOSE 8443
# liveness over the node's own HTTPS port (loopback; the certificate is pinned by peers, not here)
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import ssl,urllib.request,sys; c=ssl.create_default_context(); c.check_hostname=False; c.verify_mode=ssl.CERT_NONE; sys.exit(0 if urllib.request.urlopen('https://127.0.0.1:8443/healthz', context=c, timeout=4).status == 200 else 1)"]
ENTRYPOINT ["appliance"]
CMD ["serve", "--config", "/data/node/node.toml"]
