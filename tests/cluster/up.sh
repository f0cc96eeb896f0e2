#!/usr/bin/env bash
# A real control plane on loopback, with waf-admission installed as a
# platform team would: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler (built from their Go modules by build.sh), kwok for five fake
# nodes, an OCI registry on loopback where ci/publish.sh pushes the release
# (the image ci/image.sh built and the chart packaged by Helm's SDK), the
# chart pulled from there by digest, rendered by Helm's SDK with
# image.repository and image.digest set to the pushed image, and applied with
# kubectl, and two `waf-admission serve` replicas behind haproxy in TCP mode,
# each holding only the chart's ServiceAccount token. Stays up until down.sh.
#
#   bash tests/cluster/up.sh        # last line: KUBECONFIG=<path>
#
# WAF_CLUSTER_DIR (default /tmp/waf-admission-cluster) holds the state, the
# certificates and, in logs/, one log per component. WAF_POLICY_ACTION=Deny
# installs the default policy in Deny instead of the chart's Warn.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=tests/cluster/lib.sh
. "$HERE/lib.sh"

for tool in go curl openssl haproxy python3 cargo docker-registry buildah skopeo; do
  command -v "$tool" >/dev/null || die "tests/cluster/up.sh needs $tool"
done
python3 -c 'import helm_python, yaml' 2>/dev/null || die "tests/cluster/up.sh needs the Python packages helm-python-sdk and pyyaml"

if [ -d "$PIDS" ] && [ -n "$(ls -A "$PIDS" 2>/dev/null)" ]; then
  die "a cluster already runs from $DIR (bash tests/cluster/down.sh first)"
fi
if [ -e "$DIR" ] && [ ! -e "$DIR/.waf-admission-cluster" ]; then
  die "$DIR exists and is not a cluster up.sh made: set WAF_CLUSTER_DIR elsewhere"
fi
rm -rf "$DIR"
mkdir -p "$LOGS" "$PKI" "$PIDS" "$DIR/bin" "$DIR/etcd"
touch "$DIR/.waf-admission-cluster"
up_started=$(date +%s)
# Half a cluster helps nobody: on failure stop what started, keep the logs.
# shellcheck disable=SC2317  # reached through the ERR trap
on_failure() {
  log "up.sh failed; stopping what it started (logs kept in $LOGS)"
  KEEP_LOGS=1 bash "$HERE/down.sh" || true
}
trap on_failure ERR

log "control-plane binaries"
CP_BIN=$(bash "$HERE/build.sh")
for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok; do
  ln -sf "$CP_BIN/$b" "$DIR/bin/$b"
done
export PATH="$DIR/bin:$PATH"
"$DIR/bin/kube-apiserver" --version >&2

# The binary under test: WAF_BIN if set; else a release build newer than
# every source file (the README's first command makes one); else the debug
# build, which cargo makes or finds up to date. A copy, so a rebuild in the
# tree does not change the replicas under test.
target="${CARGO_TARGET_DIR:-$ROOT/target}"
fresh=""
if [ -z "${WAF_BIN:-}" ]; then
  newest_source=$(find "$ROOT/src" "$ROOT/Cargo.toml" "$ROOT/Cargo.lock" "$ROOT/build.rs" -type f \
    -printf '%T@\n' 2>/dev/null | sort -n | tail -1)
  candidate="$target/release/waf-admission"
  if [ -x "$candidate" ] &&
    awk -v b="$(stat -c %Y "$candidate")" -v s="$newest_source" 'BEGIN{exit !(b >= s)}'; then
    fresh=$candidate
  fi
fi
if [ -n "${WAF_BIN:-}" ]; then
  log "waf-admission binary: $WAF_BIN (WAF_BIN)"
  cp "$WAF_BIN" "$DIR/bin/waf-admission"
elif [ -n "$fresh" ]; then
  log "waf-admission binary: $fresh (built after the last source change; WAF_BIN=path picks another)"
  cp "$fresh" "$DIR/bin/waf-admission"
else
  log "waf-admission binary: the debug build (cargo build: some minutes the first time, nothing when it is up to date)"
  (cd "$ROOT" && cargo build --locked --bin waf-admission)
  cp "$target/debug/waf-admission" "$DIR/bin/waf-admission"
fi

log "the release published: image and chart pushed to an OCI registry on 127.0.0.1:$REGISTRY_PORT (ci/publish.sh)"
cat >"$DIR/registry.yml" <<YML
version: 0.1
storage:
  filesystem:
    rootdirectory: $DIR/registry
http:
  addr: 127.0.0.1:$REGISTRY_PORT
YML
start registry docker-registry serve "$DIR/registry.yml"
wait_for 30 "the OCI registry" curl -fsS "http://127.0.0.1:$REGISTRY_PORT/v2/"
PLAIN_HTTP=1 bash "$ROOT/ci/publish.sh" "127.0.0.1:$REGISTRY_PORT" "$DIR/published.env"
# shellcheck disable=SC1091  # written by ci/publish.sh just above
. "$DIR/published.env"
# What a platform team's `helm install oci://…@sha256:…` fetches: the chart
# by its manifest's digest, from the registry, not the folder in this repo.
chart=$(python3 "$HERE/render.py" pull "$CHART_REF" "$DIR/chart")
echo "CHART_ARCHIVE=$chart" >>"$DIR/published.env"
log "chart pulled: $CHART_REF -> $chart; image $IMAGE_REF"
render() {
  python3 "$HERE/render.py" --chart "$chart" \
    --image-repository "$IMAGE_REPOSITORY" --image-digest "$IMAGE_DIGEST" "$@"
}

log "certificates and keys in $PKI"
(
  cd "$PKI"
  gen_ca() { # NAME CN
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
      -subj "/CN=$2" -keyout "$1.key" -out "$1.crt" 2>/dev/null
  }
  gen_cert() { # NAME CA SUBJECT [SAN]
    local ext
    ext=$(mktemp)
    if [ -n "${4:-}" ]; then
      printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$4" >"$ext"
    else
      printf 'extendedKeyUsage=clientAuth\n' >"$ext"
    fi
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "$3" \
      -keyout "$1.key" -out "$1.csr" 2>/dev/null
    openssl x509 -req -in "$1.csr" -CA "$2.crt" -CAkey "$2.key" -CAcreateserial -days 30 \
      -extfile "$ext" -out "$1.crt" 2>/dev/null
    rm -f "$1.csr" "$ext"
  }
  gen_ca ca waf-cluster-ca
  gen_cert apiserver ca /CN=kube-apiserver \
    "IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  gen_cert admin ca "/O=system:masters/CN=kubernetes-admin"
  gen_cert controller-manager ca /CN=system:kube-controller-manager
  gen_cert scheduler ca /CN=system:kube-scheduler
  # kwok stands in for every kubelet at once, so no single node identity fits.
  gen_cert kwok ca "/O=system:masters/CN=kwok"
  # The aggregation layer's front proxy, as kubeadm sets it up.
  gen_ca front-proxy-ca front-proxy-ca
  gen_cert front-proxy-client front-proxy-ca /CN=front-proxy-client
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
  openssl pkey -in sa.key -pubout -out sa.pub 2>/dev/null
  # The webhook's own CA: its bundle goes into the webhook configurations.
  gen_ca webhook-ca waf-admission-webhook-ca
  gen_cert webhook webhook-ca /CN=waf-admission "IP:127.0.0.1,DNS:localhost"
)

kubeconfig() { # FILE USER [CERT KEY | TOKEN]
  local file=$1 user=$2
  kubectl config --kubeconfig "$file" set-cluster waf --server "https://127.0.0.1:$API_PORT" \
    --certificate-authority "$PKI/ca.crt" --embed-certs >/dev/null
  if [ $# = 4 ]; then
    kubectl config --kubeconfig "$file" set-credentials "$user" \
      --client-certificate "$3" --client-key "$4" --embed-certs >/dev/null
  else
    kubectl config --kubeconfig "$file" set-credentials "$user" --token "$3" >/dev/null
  fi
  kubectl config --kubeconfig "$file" set-context waf --cluster waf --user "$user" >/dev/null
  kubectl config --kubeconfig "$file" use-context waf >/dev/null
}
kubeconfig "$DIR/admin.kubeconfig" admin "$PKI/admin.crt" "$PKI/admin.key"
kubeconfig "$DIR/controller-manager.kubeconfig" controller-manager "$PKI/controller-manager.crt" "$PKI/controller-manager.key"
kubeconfig "$DIR/scheduler.kubeconfig" scheduler "$PKI/scheduler.crt" "$PKI/scheduler.key"
kubeconfig "$DIR/kwok.kubeconfig" kwok "$PKI/kwok.crt" "$PKI/kwok.key"

log "etcd on 127.0.0.1:$ETCD_PORT"
start etcd etcd --name waf --data-dir "$DIR/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "waf=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync --log-level warn
wait_for 30 etcd curl -fsS "http://127.0.0.1:$ETCD_PORT/health"

log "kube-apiserver on https://127.0.0.1:$API_PORT"
# The admission plugins are the release's defaults (what kubeadm and AKS run:
# NamespaceLifecycle, LimitRanger, ServiceAccount, PodSecurity, ResourceQuota,
# DefaultTolerationSeconds, both webhook plugins, ...) plus NodeRestriction.
start kube-apiserver kube-apiserver \
  --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" \
  --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
  --client-ca-file "$PKI/ca.crt" \
  --requestheader-client-ca-file "$PKI/front-proxy-ca.crt" --requestheader-allowed-names front-proxy-client \
  --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
  --requestheader-extra-headers-prefix X-Remote-Extra- \
  --proxy-client-cert-file "$PKI/front-proxy-client.crt" --proxy-client-key-file "$PKI/front-proxy-client.key" \
  --authorization-mode Node,RBAC \
  --enable-admission-plugins NodeRestriction \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
  --service-cluster-ip-range 10.96.0.0/16 \
  --allow-privileged=true \
  --endpoint-reconciler-type none \
  --profiling=false
wait_for 90 kube-apiserver kc get --raw /readyz

log "kube-controller-manager and kube-scheduler"
start kube-controller-manager kube-controller-manager \
  --kubeconfig "$DIR/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$DIR/controller-manager.kubeconfig" \
  --authorization-kubeconfig "$DIR/controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port "$KCM_PORT" \
  --leader-elect=false \
  --use-service-account-credentials \
  --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
  --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
  --controllers '*'
start kube-scheduler kube-scheduler \
  --kubeconfig "$DIR/scheduler.kubeconfig" \
  --authentication-kubeconfig "$DIR/scheduler.kubeconfig" \
  --authorization-kubeconfig "$DIR/scheduler.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port "$SCHEDULER_PORT" \
  --leader-elect=false
wait_for 60 kube-controller-manager curl -fsSk "https://127.0.0.1:$KCM_PORT/healthz"
wait_for 60 kube-scheduler curl -fsSk "https://127.0.0.1:$SCHEDULER_PORT/healthz"
# The ServiceAccount controller runs: pods can be admitted in new namespaces.
wait_for 60 "the default ServiceAccount" kc -n default get serviceaccount default

log "kwok and five fake nodes"
start kwok kwok --kubeconfig "$DIR/kwok.kubeconfig" --config "$CP_BIN/../kwok-stages.yaml" \
  --manage-all-nodes=false \
  --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
  --cidr 10.244.0.1/16 --node-ip 10.0.0.1 \
  --server-address "127.0.0.1:$KWOK_PORT"
wait_for 30 kwok curl -fsS "http://127.0.0.1:$KWOK_PORT/healthz"
node() { # NAME ZONE [gpu]
  local extra_labels="" taints="" gpu=""
  if [ "${3:-}" = gpu ]; then
    extra_labels="kubernetes.azure.com/accelerator: nvidia
    node.kubernetes.io/instance-type: Standard_NC24ads_A100_v4"
    taints="taints: [{key: sku, value: gpu, effect: NoSchedule}]"
    gpu="nvidia.com/gpu: \"1\""
  else
    extra_labels="node.kubernetes.io/instance-type: Standard_D8s_v5"
  fi
  kc apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Node
metadata:
  name: $1
  annotations: {kwok.x-k8s.io/node: fake}
  labels:
    type: kwok
    kubernetes.io/hostname: $1
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    topology.kubernetes.io/zone: "$2"
    $extra_labels
spec:
  $taints
status:
  capacity: {cpu: "8", memory: 32Gi, pods: "110", $gpu}
  allocatable: {cpu: "8", memory: 32Gi, pods: "110", $gpu}
YAML
}
node worker-1 1
node worker-2 2
node worker-3 3
node gpu-1 1 gpu
node gpu-2 2 gpu
kc wait --for=condition=Ready node --all --timeout=60s >/dev/null

log "waf-admission: the chart's CRDs, ServiceAccount and RBAC"
render base | kc apply -f - >"$LOGS/install.log"
kc wait --for=condition=Established crd --all --timeout=60s >/dev/null
token=$(kc -n "$NS" create token "$SA" --duration 48h)
kubeconfig "$DIR/serve.kubeconfig" "system:serviceaccount:$NS:$SA" "$token"

log "two serve replicas, haproxy on https://127.0.0.1:$WEBHOOK_PORT"
cat >"$DIR/haproxy.cfg" <<CFG
# kube-proxy in miniature: TCP, round robin, a replica leaves the rotation
# as soon as its /readyz stops answering 200.
global
  maxconn 4096
defaults
  mode tcp
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  retries 3
  option redispatch
frontend webhook
  bind 127.0.0.1:$WEBHOOK_PORT
  default_backend replicas
backend replicas
  balance roundrobin
  option httpchk GET /readyz
  http-check expect status 200
  default-server check check-ssl verify none inter 300ms fall 1 rise 1
  server serve-0 127.0.0.1:${REPLICA_PORTS[0]}
  server serve-1 127.0.0.1:${REPLICA_PORTS[1]}
CFG
bash "$HERE/replica.sh" start 0
bash "$HERE/replica.sh" start 1
start haproxy haproxy -db -f "$DIR/haproxy.cfg"
wait_for 30 haproxy curl -fsS --cacert "$PKI/webhook-ca.crt" "https://127.0.0.1:$WEBHOOK_PORT/readyz"

log "waf-admission: webhook configurations (url + caBundle) and the default policy"
render webhooks --url "https://127.0.0.1:$WEBHOOK_PORT" --ca-file "$PKI/webhook-ca.crt" |
  kc apply -f - >>"$LOGS/install.log"
render policy --action "${WAF_POLICY_ACTION:-Warn}" | kc apply -f - >>"$LOGS/install.log"
policy_ready() {
  [ "$(kc get wap baseline -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}
wait_for 60 "policy baseline Ready" policy_ready
log "waf-admission: the chart's Deployment (the published image by digest), Service, HPA, PDB, NetworkPolicy"
# Their pods land on kwok's fake nodes and run nothing (no kubelet): the
# replicas that answer are the host processes above.
render workload | kc apply -f - >>"$LOGS/install.log"

cat >"$DIR/env" <<ENV
WAF_CLUSTER_DIR=$DIR
KUBECONFIG=$DIR/admin.kubeconfig
WEBHOOK_PORT=$WEBHOOK_PORT
REPLICA_PORTS="${REPLICA_PORTS[*]}"
REPLICA_METRICS_PORTS="${REPLICA_METRICS_PORTS[*]}"
API_PORT=$API_PORT
REGISTRY_PORT=$REGISTRY_PORT
ENV
log "up in $(($(date +%s) - up_started))s; logs of every component in $LOGS"
log "try: kubectl --kubeconfig $DIR/admin.kubeconfig get nodes,wap"
echo "KUBECONFIG=$DIR/admin.kubeconfig"
