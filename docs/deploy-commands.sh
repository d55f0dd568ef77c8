# The commands of docs/deploy.md, in order, section by section. docs/deploy.md shows every
# section verbatim (tests/cluster/test_deploy_doc.py checks that) and the test runs them on three
# "hosts" on this machine: 127.0.0.1, 127.0.0.2 and 127.0.0.3, each with its own directory and
# its own SoftHSM2 token. A section line says where its commands run:
#   @ node         on each of the three node hosts, with node-settings' variables set for it
#   @ workstation  on the operator's (and the users') machine; shell variables carry over
#   @ manual       shown, not run by the test (package installation, systemctl)
#   @ file         a file's content, shown (the test reads the systemd unit's ExecStart)
# The test replaces `scp` by a local copy (node-N:/var/lib/appliance/... is host N's STATE) and
# `systemctl enable --now appliance` by starting the unit's ExecStart on that host (with its
# Environment; /var/lib/appliance and /opt/hsm there are host N's STATE and HSM_DIR).

# ---- section install @ manual
apt-get install -y python3-venv softhsm2 openssl curl   # softhsm2: only for a software token
python3 -m venv /opt/appliance
/opt/appliance/bin/pip install ./threshold-appliance    # a checkout of this repository
ln -s /opt/appliance/bin/appliance /usr/local/bin/appliance
useradd --system --home-dir /var/lib/appliance --create-home --shell /usr/sbin/nologin appliance
install -d -o appliance -g appliance -m 0700 /opt/hsm   # the software token and its PIN

# ---- section node-settings @ manual
NODE_ID=node-1              # node-2, node-3 on the other two hosts
STATE=/var/lib/appliance    # the node's directory (0700, the appliance user's)
HSM_DIR=/opt/hsm            # the SoftHSM2 token, its configuration and PIN (not in STATE)
ADDR=10.0.0.1:8443          # the address the node listens on, as its peers and clients reach it
export SOFTHSM2_CONF=$HSM_DIR/softhsm2.conf

# ---- section token @ node
mkdir -p "$HSM_DIR/tokens"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' \
    "$HSM_DIR" > "$SOFTHSM2_CONF"
(umask 077 && openssl rand -hex 16 > "$HSM_DIR/hsm.pin")        # the token's user PIN
softhsm2-util --init-token --free --label "$NODE_ID" \
    --so-pin "$(openssl rand -hex 16)" --pin "$(cat "$HSM_DIR/hsm.pin")"

# ---- section init @ node
appliance init --dir "$STATE" --node-id "$NODE_ID" --listen "$ADDR" --url "https://$ADDR" \
    --pkcs11-module /usr/lib/softhsm/libsofthsm2.so --token-label "$NODE_ID" \
    --pin-file "$HSM_DIR/hsm.pin"
cat >> "$STATE/node.toml" <<'EOF'

[audit]
checkpoint_every = 5   # an HSM-signed, peer co-signed checkpoint every 5 audit entries
EOF

# ---- section workstation-settings @ manual
NODE1=10.0.0.1:8443 NODE2=10.0.0.2:8443 NODE3=10.0.0.3:8443
# ssh reaches the hosts as node-1, node-2, node-3 (~/.ssh/config)

# ---- section collect @ workstation
scp node-1:/var/lib/appliance/node-info.json node-1.json
scp node-2:/var/lib/appliance/node-info.json node-2.json
scp node-3:/var/lib/appliance/node-info.json node-3.json
scp node-1:/var/lib/appliance/tls/node.crt node-1.crt
scp node-2:/var/lib/appliance/tls/node.crt node-2.crt
scp node-3:/var/lib/appliance/tls/node.crt node-3.crt

# ---- section users @ workstation
appliance user-key --out alice.pem   # initiator: asks for signatures
appliance user-key --out bob.pem     # approver: approves them
appliance user-key --out carol.pem   # admin: key changes, policy changes
appliance user-key --out dave.pem    # admin (the second of the admin quorum)
appliance user-key --out erin.pem    # auditor: reads the audit log

# ---- section policy @ workstation
cat > policy.toml <<'EOF'
[signing]
initiator_roles = ["initiator"]
approvals = [{ roles = ["approver"], count = 1 }]   # one approver besides the initiator
allow_raw_digest = false     # no blind signing: the nodes read what they sign
payload_types = ["message"]  # a text whose SHA-256 the nodes sign; no PSBT, Ethereum or EIP-712
derivation_paths = ["m"]     # the key itself, no derived keys
max_signatures = 100         # per key and hour
window_s = 3600

[key_changes]                # creating, refreshing, resharing, importing a key
roles = ["admin"]
quorum = 2

[policy_change]
roles = ["admin"]
quorum = 2
EOF
appliance cluster-config --id prod --out cluster.toml --policy policy.toml \
    --node-info node-1.json node-2.json node-3.json \
    --user alice:initiator:alice.pub.pem --user bob:approver:bob.pub.pem \
    --user carol:admin:carol.pub.pem --user dave:admin:dave.pub.pem \
    --user erin:auditor:erin.pub.pem

# ---- section distribute @ workstation
scp cluster.toml node-1:/var/lib/appliance/cluster.toml
scp cluster.toml node-2:/var/lib/appliance/cluster.toml
scp cluster.toml node-3:/var/lib/appliance/cluster.toml

# ---- section unit @ file
[Unit]
Description=threshold-signing appliance node
After=network-online.target
Wants=network-online.target

[Service]
User=appliance
UMask=0077
LimitCORE=0
Environment=SOFTHSM2_CONF=/opt/hsm/softhsm2.conf
ExecStart=/usr/local/bin/appliance serve --config /var/lib/appliance/node.toml
Restart=on-failure

[Install]
WantedBy=multi-user.target

# ---- section start @ node
systemctl enable --now appliance

# ---- section ready @ workstation
curl -fsS --retry 60 --retry-connrefused --retry-delay 1 --cacert node-1.crt "https://$NODE1/readyz"
curl -fsS --retry 60 --retry-connrefused --retry-delay 1 --cacert node-2.crt "https://$NODE2/readyz"
curl -fsS --retry 60 --retry-connrefused --retry-delay 1 --cacert node-3.crt "https://$NODE3/readyz"

# ---- section key @ workstation
export APPLIANCE_URL="https://$NODE1" APPLIANCE_SERVER_CERT=node-1.crt
OP=$(appliance key create --user carol --key carol.pem --threshold 2 --no-wait --field operation_id)
appliance operation approve --user dave --key dave.pem "$OP" --field status
KEY=$(appliance operation wait --user carol --key carol.pem "$OP" --field key_id)
PUB=$(appliance key show --user carol --key carol.pem "$KEY" --field public_key)
echo "key $KEY, public key $PUB"

# ---- section sign @ workstation
REQ=$(appliance sign --user alice --key alice.pem --key-id "$KEY" --message "pay invoice 42" \
      --no-wait --field request_id)
appliance approve --user bob --key bob.pem "$REQ" --show --field decoded
appliance approve --user bob --key bob.pem "$REQ" --field status
DER=$(appliance signature --user alice --key alice.pem "$REQ" --field signature.der)

# ---- section verify @ workstation
DIGEST=$(printf %s "pay invoice 42" | sha256sum | cut -d' ' -f1)
appliance verify --public-key "$PUB" --digest "$DIGEST" --signature "$DER"
printf 3036301006072a8648ce3d020106052b8104000a032200%s "$PUB" | tr a-f A-F | basenc --base16 -d > key.der
printf %s "$DIGEST" | tr a-f A-F | basenc --base16 -d > digest.bin
printf %s "$DER" | tr a-f A-F | basenc --base16 -d > signature.der
openssl pkeyutl -verify -pubin -keyform DER -inkey key.der -in digest.bin -sigfile signature.der

# ---- section audit @ workstation
appliance audit anchor --url "https://$NODE2" --server-cert node-2.crt --user erin --key erin.pem \
    --node node-1 --wait 60 --out anchor-node-2.json
appliance audit anchor --url "https://$NODE3" --server-cert node-3.crt --user erin --key erin.pem \
    --node node-1 --wait 60 --out anchor-node-3.json
appliance audit export --user erin --key erin.pem --out audit-node-1.jsonl
appliance audit verify audit-node-1.jsonl --cluster cluster.toml --node node-1 \
    --anchor anchor-node-2.json --anchor anchor-node-3.json

# ---- section metrics @ workstation
scp node-1:/var/lib/appliance/metrics.token node-1.token
curl -fsS --cacert node-1.crt -H "Authorization: Bearer $(cat node-1.token)" \
    "https://$NODE1/metrics" | grep '^appliance_sign_requests_completed_total'

# ---- section scrape @ file
scrape_configs:
  - job_name: appliance-node-1        # likewise node-2, node-3: each has its own token and certificate
    scheme: https
    authorization:
      type: Bearer
      credentials_file: /etc/prometheus/appliance/node-1.token
    tls_config:
      ca_file: /etc/prometheus/appliance/node-1.crt
    static_configs:
      - targets: ["10.0.0.1:8443"]
