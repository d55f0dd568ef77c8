# A threshold-signing appliance node: the `appliance` package, SoftHSM2, a non-root user.
# NOT BUILT HERE: the machine this project is developed and tested on has no Docker engine.
# tests/packaging/test_container.py checks this file (hadolint, dockerfile-parse: pinned base
# image, non-root USER, no secret in ENV/ARG, HEALTHCHECK, every COPY source exists) and
# docker-compose.yml (the compose schema, paths, secrets); nothing here has run in a container.
#
#   docker build -t threshold-appliance .
#   docker compose up -d         # three nodes with demo SoftHSM2 tokens, see docker-compose.yml
#
# A node's state (node.toml, cluster.toml, TLS key and certificate, the SoftHSM2 token
# directory, node.db, metrics.token; directories 0700, files 0600) lives in one directory on a
# volume, /data/node. softhsm2.conf names its token directory by absolute path, so mount a
# node's volume at the same path for `appliance init` and `appliance serve`. The token's PIN
# is not in that volume and not in node.toml: it is a secret file, /run/secrets/hsm-pin
# (compose `secrets:`, or any read-only mount of a file the node user can read but does not
# own), named by `init --pin-file`. Users' private keys never belong in a node's volume:
# nodes know users by the public keys in cluster.toml.
#
# ---- a vendor PKCS#11 module (Thales Luna, Entrust nShield, AWS CloudHSM, YubiHSM 2, ...) ----
# The image carries SoftHSM2 only. A vendor's client library is mounted, not baked in (its
# licence, its version and its configuration belong to the host), at fixed places:
#   /opt/pkcs11/     the vendor's client library directory, read-only
#                    (e.g. -v /usr/safenet/lunaclient:/opt/pkcs11:ro)
#   /etc/pkcs11/     the module's configuration and client certificates, read-only, named by
#                    the variable the vendor's library reads (e.g. Luna's
#                    ChrystokiConfigurationPath=/etc/pkcs11, YubiHSM's
#                    YUBIHSM_PKCS11_CONF=/etc/pkcs11/yubihsm_pkcs11.conf): pass it with -e
# then, once per node, on the token the HSM team created for it:
#   docker run --rm -v n1:/data/node -v /usr/safenet/lunaclient:/opt/pkcs11:ro \
#     -v /etc/luna-client:/etc/pkcs11:ro -e ChrystokiConfigurationPath=/etc/pkcs11 \
#     -v /etc/appliance/node-1.pin:/run/secrets/hsm-pin:ro threshold-appliance init --dir /data/node \
#     --node-id node-1 --listen 0.0.0.0:8443 --url https://node-1:8443 --host node-1 \
#     --pkcs11-module /opt/pkcs11/lib/libCryptoki2_64.so --token-label node-1 \
#     --pin-file /run/secrets/hsm-pin
# (the PIN file root's, readable by the node's group: `install -o 0 -g 10001 -m 0440 ...`)
# and `serve` with the same mounts. The library must load on Debian 12 (glibc 2.36, x86-64);
# a vendor library that writes logs or a cache needs that directory mounted writable (the
# compose nodes run with a read-only root file system). README.md "Container" has the details.

# ---- build: wheels for the package and its dependencies (compilers stay here) ----------
FROM python:3.11.13-slim-bookworm AS build
# Debian stable's package versions are not pinned: a point release replaces them and a pinned
# version would stop building (hadolint DL3008); the base image tag pins the release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential libgmp-dev libmpfr-dev libmpc-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY appliance ./appliance
COPY hsm ./hsm
COPY api ./api
COPY client ./client
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# ---- run ---------------------------------------------------------------------------------
FROM python:3.11.13-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1
# the mount points, owned by the node user so that a fresh named volume mounted there is too:
# /data/node (a node's state), /data/node-1..3 (the compose set-up reaches every node's volume),
# /data/users (demo users' keys, never mounted by a node), /data/public (node-info and public
# keys handed to `cluster-config`), /opt/pkcs11 and /etc/pkcs11 (a vendor module, see above)
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends softhsm2 libgmp10 libmpfr6 libmpc3 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 appliance \
 && useradd --system --uid 10001 --gid appliance --home-dir /data --shell /usr/sbin/nologin appliance \
 && mkdir -p /data/node /data/node-1 /data/node-2 /data/node-3 /data/users /data/public \
             /opt/pkcs11 /etc/pkcs11 \
 && chown -R appliance:appliance /data && chmod 0750 /data
COPY --from=build /wheels /wheels
RUN pip install --no-index --find-links=/wheels threshold-appliance==0.1.0 && rm -rf /wheels
COPY softhsm-config /opt/appliance/softhsm-config

USER 10001:10001
WORKDIR /data
# a node's state, token directory included, belongs on a volume
VOLUME ["/data/node"]
EXPOSE 8443
# liveness over the node's own HTTPS port (loopback; the certificate is pinned by peers, not here)
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import ssl,urllib.request,sys; c=ssl.create_default_context(); c.check_hostname=False; c.verify_mode=ssl.CERT_NONE; sys.exit(0 if urllib.request.urlopen('https://127.0.0.1:8443/healthz', context=c, timeout=4).status == 200 else 1)"]
ENTRYPOINT ["appliance"]
CMD ["serve", "--config", "/data/node/node.toml"]
