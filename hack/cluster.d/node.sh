# The real worker node of the local cluster, sourced by hack/cluster: containerd + runc + CNI plugins
# (Debian packages), kubelet and kube-proxy (built with the control plane), CoreDNS and metrics-server
# (built from the Go module proxy). They run as host processes like the control plane, so the node
# needs no image but the pod sandbox (`hack/images build pause`).
#
# Network: one Linux bridge made for the cluster (mp0, 10.88.0.1/24). Its address is the node's
# InternalIP, the API server's address, and where CoreDNS and metrics-server listen. Pods get addresses
# on that bridge and routes to it and to the Service range only: no default route, no masquerading, and
# a FORWARD rule that drops whatever would leave the bridge, so nothing a pod sends leaves this machine.
# shellcheck shell=bash

node_name=modelpilot-node
node_bridge=mp0
node_ip=10.88.0.1
pod_cidr=10.88.0.0/24
cluster_dns=10.96.0.10
sandbox_image=registry.k8s.io/pause:3.10
node_dir=$state/node
containerd_socket=$node_dir/containerd/containerd.sock
# containerd's content and snapshots (the images loaded by hack/images: GBs with torch) outlive the
# cluster, `down --purge` included, like buildah's storage: the next cluster starts with them.
containerd_root=$cache/node-containerd
node_components=(containerd kubelet kube-proxy coredns metrics-server)
# Those that need the grants of hack/cluster.d/node-addons.yaml at start (metrics-server exits without them).
node_addon_users=(coredns metrics-server)
forward_chain=MODELPILOT-FORWARD

# ---------------------------------------------------------------- prerequisites

# Everything the node needs from the host, checked before anything starts: each failure says what to do.
node_prerequisites() {
  local problems=() cmd ctl
  [ "$(id -u)" -eq 0 ] || problems+=("the real node needs root (containers, bridges, iptables); run as root or use 'hack/cluster up --no-node'")
  for cmd in containerd containerd-shim-runc-v2 runc ctr iptables iptables-restore ip; do
    command -v "$cmd" >/dev/null || problems+=("'$cmd' is missing: apt-get install containerd runc iptables iproute2")
  done
  for cmd in bridge host-local loopback portmap; do
    [ -x "/usr/lib/cni/$cmd" ] || problems+=("CNI plugin /usr/lib/cni/$cmd is missing: apt-get install containernetworking-plugins")
  done
  for ctl in cpu cpuacct cpuset memory pids devices freezer; do
    if [ ! -d "/sys/fs/cgroup/$ctl" ] && ! grep -qw "$ctl" /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
      problems+=("cgroup controller '$ctl' is not mounted (kubelet needs it): mount it, or boot with it enabled")
    fi
  done
  [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] ||
    problems+=("/proc/sys/net/bridge is missing: load the br_netfilter module ('modprobe br_netfilter')")
  [ -e /proc/sys/net/ipv4/ip_forward ] || problems+=("/proc/sys/net/ipv4/ip_forward is missing: no IPv4 forwarding in this kernel")
  if [ ${#problems[@]} -gt 0 ]; then
    printf 'hack/cluster: the real node cannot start on this machine:\n' >&2
    printf '  - %s\n' "${problems[@]}" >&2
    die "fix the above, or run 'hack/cluster up --no-node' for a cluster of simulated (kwok) nodes only"
  fi
}

# ---------------------------------------------------------------- network

node_network_up() {
  if ! ip link show "$node_bridge" >/dev/null 2>&1; then
    ip link add "$node_bridge" type bridge
  fi
  ip addr replace "$node_ip/24" dev "$node_bridge"
  ip link set "$node_bridge" up
  # The machine's own forwarding setting is put back by `down`.
  [ -s "$node_dir/ip_forward.orig" ] || cat /proc/sys/net/ipv4/ip_forward >"$node_dir/ip_forward.orig"
  echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables
  # Service traffic between pods is routed through the host (DNAT, then back onto the bridge)...
  echo 1 >/proc/sys/net/ipv4/ip_forward
  # ...and nothing else is forwarded: only bridge to bridge.
  iptables -w -N "$forward_chain" 2>/dev/null || iptables -w -F "$forward_chain"
  iptables -w -A "$forward_chain" -i "$node_bridge" -o "$node_bridge" -j RETURN
  iptables -w -A "$forward_chain" -j DROP
  iptables -w -C FORWARD -j "$forward_chain" 2>/dev/null || iptables -w -I FORWARD 1 -j "$forward_chain"
}

node_network_down() {
  # portmap's chains (hostPorts) stay after their pods are gone; neither portmap nor kube-proxy removes them.
  local chain hook
  for hook in PREROUTING OUTPUT; do
    while iptables -w -t nat -D "$hook" -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT 2>/dev/null; do :; done
  done
  while iptables -w -t nat -D POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ 2>/dev/null; do :; done
  for chain in $(iptables -w -t nat -S | awk '$1 == "-N" && $2 ~ /^CNI-(HOSTPORT|DN-)/ {print $2}'); do
    iptables -w -t nat -F "$chain" 2>/dev/null || true
  done
  for chain in $(iptables -w -t nat -S | awk '$1 == "-N" && $2 ~ /^CNI-(HOSTPORT|DN-)/ {print $2}'); do
    iptables -w -t nat -X "$chain" 2>/dev/null || true
  done
  iptables -w -D FORWARD -j "$forward_chain" 2>/dev/null || true
  iptables -w -F "$forward_chain" 2>/dev/null || true
  iptables -w -X "$forward_chain" 2>/dev/null || true
  if [ -s "$node_dir/ip_forward.orig" ]; then
    cat "$node_dir/ip_forward.orig" >/proc/sys/net/ipv4/ip_forward
    rm -f "$node_dir/ip_forward.orig"
  fi
  ip link del "$node_bridge" 2>/dev/null || true
}

# ---------------------------------------------------------------- configuration files

# What the node's processes read at start: when it changes, `up` restarts the node. Before the first `up`
# the files do not exist yet (the digest is then that of what exists: nothing).
node_config_digest() {
  { cat "$node_dir/containerd/config.toml" "$node_dir/cni/net.d/10-modelpilot.conflist" \
    "$node_dir/kubelet/config.yaml" "$node_dir/kube-proxy.yaml" "$node_dir/Corefile" 2>/dev/null || true; } | sha256sum
}

# Replace <file> with standard input only when it differs: kube-proxy exits as soon as its configuration file
# is written, even with the same content, so every `up` would otherwise stop it.
write_if_changed() {
  local new="$1.new"
  cat >"$new"
  if cmp -s "$new" "$1"; then rm -f "$new"; else mv -f "$new" "$1"; fi
}

write_node_configs() {
  mkdir -p "$node_dir"/{containerd,cni/net.d,cni/ipam,kubelet,metrics-server}
  write_if_changed "$node_dir/containerd/config.toml" <<EOF
version = 2
root = "$containerd_root"
state = "$node_dir/containerd/state"
[grpc]
  address = "$containerd_socket"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$sandbox_image"
  # This VM refuses a negative oom_score_adj; runc fails every sandbox unless containerd keeps it >= its own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$node_dir/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$node_dir/containerd/registries"
[plugins."io.containerd.internal.v1.opt"]
  path = "$node_dir/containerd/opt"
EOF
  # Images are imported, never pulled: every registry resolves to a closed port on loopback, so a pull
  # (a missing image with pull policy IfNotPresent) fails at once and sends nothing off this machine.
  local registry
  for registry in _default docker.io ghcr.io registry.k8s.io quay.io gcr.io public.ecr.aws; do
    mkdir -p "$node_dir/containerd/registries/$registry"
    printf 'server = "http://127.0.0.1:9"\n[host."http://127.0.0.1:9"]\n  capabilities = ["pull", "resolve"]\n' |
      write_if_changed "$node_dir/containerd/registries/$registry/hosts.toml"
  done
  # Routes to the bridge subnet (on link) and the Service range only: pods have no default route.
  write_if_changed "$node_dir/cni/net.d/10-modelpilot.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "modelpilot",
  "plugins": [
    {
      "type": "bridge", "bridge": "$node_bridge", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$node_dir/cni/ipam",
        "ranges": [[{"subnet": "$pod_cidr", "gateway": "$node_ip"}]],
        "routes": [{"dst": "$service_cidr"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  write_if_changed "$node_dir/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $node_ip
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $pki/kubelet-serving.crt
tlsPrivateKeyFile: $pki/kubelet-serving.key
containerRuntimeEndpoint: unix://$containerd_socket
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
oomScoreAdj: 0
clusterDNS: [$cluster_dns]
clusterDomain: cluster.local
# Pods resolve cluster names only: the host's resolvers are not handed to them.
resolvConf: ""
# Images are built and imported here, never pulled: keep them however full the disk gets. The disk is
# this machine's, shared with the image builds and everything else: under disk pressure the kubelet
# deletes every unused image before it evicts a pod, so the thresholds are small absolute amounts, not
# shares of a large disk (2 % of 250 GB deleted GBs of freshly loaded images during a build).
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 200Mi, nodefs.available: 512Mi, imagefs.available: 512Mi, nodefs.inodesFree: 1%}
serializeImagePulls: false
maxPods: 110
EOF
  write_if_changed "$node_dir/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $state/kube-proxy.kubeconfig}
hostnameOverride: $node_name
mode: iptables
clusterCIDR: $pod_cidr
bindAddress: $node_ip
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: [$node_ip/32]
oomScoreAdj: 0
# Leave the host's conntrack settings alone.
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
  # Cluster names only; any other name is refused (pods have no way out, so no upstream resolver).
  write_if_changed "$node_dir/Corefile" <<EOF
cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {
    bind $node_ip
    errors
    ready 127.0.0.1:8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $state/coredns.kubeconfig
        pods insecure
    }
    cache 5
}
EOF
}

# ---------------------------------------------------------------- certificates

ensure_node_certificates() {
  # An API server certificate from before the node existed lacks the node address.
  if ! openssl x509 -in "$pki/apiserver.crt" -noout -ext subjectAltName 2>/dev/null | grep -q "IP Address:$node_ip"; then
    sign_apiserver_certificate
  fi
  [ -s "$pki/metrics-server.crt" ] && return 0
  say "generating the node's certificates"
  local client="keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  sign kubelet "/O=system:nodes/CN=system:node:$node_name" "$client"
  sign kubelet-serving "/O=system:nodes/CN=system:node:$node_name" "keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$node_ip,DNS:$node_name"
  sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$client"
  sign front-proxy-client "/CN=front-proxy-client" "$client"
  sign kube-proxy "/CN=system:kube-proxy" "$client"
  sign coredns "/CN=modelpilot:coredns" "$client"
  sign metrics-server "/CN=system:metrics-server" "$client" # last: its presence marks a complete set
}

write_node_kubeconfigs() {
  local name
  for name in kubelet kube-proxy coredns metrics-server; do write_kubeconfig "$state/$name.kubeconfig" "$name"; done
}

# The API server flags that only make sense with the node: where kubelets are, who the API server is to
# them, and the aggregation layer for metrics-server.
node_apiserver_flags() {
  printf '%s\n' --kubelet-preferred-address-types=InternalIP \
    "--kubelet-client-certificate=$pki/apiserver-kubelet-client.crt" "--kubelet-client-key=$pki/apiserver-kubelet-client.key" \
    "--requestheader-client-ca-file=$pki/ca.crt" --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    "--proxy-client-cert-file=$pki/front-proxy-client.crt" "--proxy-client-key-file=$pki/front-proxy-client.key" \
    --enable-aggregator-routing=true
}

# ---------------------------------------------------------------- components

start_containerd() {
  launch containerd --config "$node_dir/containerd/config.toml"
  wait_for containerd 30 "containerd to answer on $containerd_socket" ctr --address "$containerd_socket" version
}

# Images built here (nothing can be pulled): the sandbox image, without which the kubelet runs no pod, and
# busybox, which the tests' pods on the real node and the chart's test pod run (hack/images: ref_of busybox).
node_images=(pause busybox)
ensure_node_images() {
  local name missing=()
  for name in "${node_images[@]}"; do
    ctr --address "$containerd_socket" -n k8s.io images check "name==$("$here/images" ref "$name")" 2>/dev/null |
      grep -q complete || missing+=("$name")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "building and loading the node's images: ${missing[*]}"
  "$here/images" build "${missing[@]}" >&2
  "$here/images" load --address "$containerd_socket" "${missing[@]}" >&2
}

start_kubelet() {
  launch kubelet --config="$node_dir/kubelet/config.yaml" --kubeconfig="$state/kubelet.kubeconfig" \
    --hostname-override="$node_name" --node-ip="$node_ip" --root-dir="$node_dir/kubelet/root" \
    --cert-dir="$node_dir/kubelet/pki" --node-labels="modelpilot.io/node-pool=real,type=real" --v=1
}

start_kube_proxy() {
  launch kube-proxy --config="$node_dir/kube-proxy.yaml"
}

start_coredns() {
  launch coredns -conf "$node_dir/Corefile"
}

start_metrics_server() {
  # Only the real node is scraped: kwok's nodes have made-up addresses that nothing may be sent to.
  launch metrics-server --bind-address="$node_ip" --secure-port=4443 --cert-dir="$node_dir/metrics-server" \
    --kubeconfig="$state/metrics-server.kubeconfig" --authentication-kubeconfig="$state/metrics-server.kubeconfig" \
    --authorization-kubeconfig="$state/metrics-server.kubeconfig" --node-selector=type=real \
    --kubelet-preferred-address-types=InternalIP --kubelet-insecure-tls --metric-resolution=15s
}

start_node_component() {
  case $1 in
  containerd) start_containerd ;;
  kubelet) start_kubelet ;;
  kube-proxy) start_kube_proxy ;;
  coredns) start_coredns ;;
  metrics-server) start_metrics_server ;;
  esac
}

node_ready() {
  [ "$(kubectl_ get node "$node_name" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}

dns_ready() { curl -fsS http://127.0.0.1:8181/ready; }

metrics_api_ready() {
  [ "$(kubectl_ get apiservice v1beta1.metrics.k8s.io -o jsonpath='{.status.conditions[?(@.type=="Available")].status}')" = True ]
}

apply_node_addons() {
  sed -e "s/@NODE_IP@/$node_ip/g" -e "s/@CLUSTER_DNS@/$cluster_dns/g" "$here/cluster.d/node-addons.yaml" |
    kubectl_ apply --server-side --field-manager=hack-cluster -f - >/dev/null
}

# ---------------------------------------------------------------- stop and clean up

# Stops every pod the node runs (their network namespaces and veths go with them), then the node's
# processes, then whatever a killed run left behind: shims, mounts, network namespaces, the bridge.
node_down() {
  stop_components metrics-server coredns kube-proxy kubelet
  if is_running containerd; then
    crictl_ rmp --all --force >/dev/null 2>&1 || true
  fi
  stop_components containerd
  node_clean_leftovers
  if [ -x "$(bin_dir)/kube-proxy" ]; then
    "$(bin_dir)/kube-proxy" --cleanup >/dev/null 2>&1 || true
  fi
  node_network_down
}

crictl_() { "$(bin_dir)/crictl" --runtime-endpoint "unix://$containerd_socket" --timeout 30s "$@"; }

node_clean_leftovers() {
  local pid mount
  # Shims outlive containerd by design; those of this node's containerd go now.
  for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $containerd_socket" || true); do
    kill -KILL "$pid" 2>/dev/null || true
  done
  # Deepest first: container root filesystems, volumes, sandbox shm.
  awk -v dir="$node_dir/" 'index($2, dir) == 1 {print $2}' /proc/self/mounts | sort -r | while read -r mount; do
    umount -l "$mount" 2>/dev/null || true
  done
  # Pod network namespaces made by containerd for this node's sandboxes.
  for mount in /var/run/netns/cni-*; do
    [ -e "$mount" ] || continue
    ip netns delete "$(basename "$mount")" 2>/dev/null || true
  done
  rm -rf "$node_dir/cni/ipam"
}
