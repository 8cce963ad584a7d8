#!/bin/sh
# A test exec credential plugin. Everything it does goes through $KP_DIR
# (set by the kubeconfig's exec env, which tests that env entries arrive):
#   runs   one line appended per run, so a spec can count the runs
#   token  the token to hand out, read at every run
#   ttl    when present, the credential expires that many seconds from now
#   cert, key  when present, a client certificate is handed out instead
#   info   receives $KUBERNETES_EXEC_INFO
#   fail   when present, the plugin complains on stderr and exits 1
#   sleep  when present, the plugin first sleeps that many seconds (a slow refresh)
set -eu
echo run >>"$KP_DIR/runs"
if [ -e "$KP_DIR/sleep" ]; then sleep "$(cat "$KP_DIR/sleep")"; fi
printf '%s' "${KUBERNETES_EXEC_INFO:-}" >"$KP_DIR/info"
if [ -e "$KP_DIR/fail" ]; then
  echo "exec-plugin: told to fail" >&2
  exit 1
fi
api=${KP_API:-client.authentication.k8s.io/v1}
json_pem() { awk '{ printf "%s\\n", $0 }' "$1"; }
status=""
if [ -e "$KP_DIR/cert" ]; then
  status="\"clientCertificateData\": \"$(json_pem "$KP_DIR/cert")\", \"clientKeyData\": \"$(json_pem "$KP_DIR/key")\""
else
  status="\"token\": \"$(cat "$KP_DIR/token")\""
fi
if [ -e "$KP_DIR/ttl" ]; then
  status="$status, \"expirationTimestamp\": \"$(date -u -d "+$(cat "$KP_DIR/ttl") seconds" +%Y-%m-%dT%H:%M:%SZ)\""
fi
printf '{"apiVersion": "%s", "kind": "ExecCredential", "status": {%s}}\n' "$api" "$status"
