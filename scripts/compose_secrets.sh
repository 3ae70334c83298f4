#!/usr/bin/env bash
# `make compose-secrets`: the files docker-compose.secure.yml mounts, made with openssl.
#
#   scripts/compose_secrets.sh [OUT_DIR]        # OUT_DIR: deploy/secrets/ by default
#
# Writes, in OUT_DIR only:
#   ca.pem, ca.key      a CA of the stack's own (callers trust ca.pem)
#   tls.crt, tls.key    tfgate's certificate for localhost, 127.0.0.1 and tfgate, signed by it
#   demo.key            a random API key for the client "demo" (give it to the caller)
#   keys.toml           tfgate's key file: that key's SHA-256 digest, never the key
#   tfgate.toml         config/tfgate.toml followed by config/auth.toml: the config tfgate reads
#
# Run it again at will: what exists is kept (a certificate that its CA does not verify, or
# that does not fit its key, is issued again), keys.toml and tfgate.toml are written afresh
# from demo.key and the two config files. Delete OUT_DIR to start over with a new CA and key.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-$ROOT/deploy/secrets}
CLIENT=demo
SANS="DNS:localhost,IP:127.0.0.1,DNS:tfgate"

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
chmod 700 "$OUT"
# Shown as typed from the current directory when it is below it.
SHOWN=${OUT#"$PWD"/}

ec_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

if [[ ! -s $OUT/ca.pem || ! -s $OUT/ca.key ]]; then
  ec_key "$OUT/ca.key"
  openssl req -x509 -new -key "$OUT/ca.key" -days 3650 -subj "/CN=tfgate compose CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -out "$OUT/ca.pem"
  rm -f "$OUT/tls.crt"  # a new CA: the old certificate is not its own
  echo "made $SHOWN/ca.pem"
fi

fits() {  # the certificate verifies against the CA and carries the key's public half
  openssl verify -CAfile "$OUT/ca.pem" "$OUT/tls.crt" >/dev/null 2>&1 &&
    [[ $(openssl x509 -in "$OUT/tls.crt" -noout -pubkey) == \
      $(openssl pkey -in "$OUT/tls.key" -pubout) ]]
}

if [[ ! -s $OUT/tls.crt || ! -s $OUT/tls.key ]] || ! fits; then
  ec_key "$OUT/tls.key"
  openssl req -new -key "$OUT/tls.key" -subj /CN=tfgate -out "$OUT/tls.csr"
  printf 'basicConstraints=CA:FALSE\nsubjectAltName=%s\nextendedKeyUsage=serverAuth\n' \
    "$SANS" >"$OUT/tls.ext"
  openssl x509 -req -in "$OUT/tls.csr" -CA "$OUT/ca.pem" -CAkey "$OUT/ca.key" \
    -CAcreateserial -days 825 -extfile "$OUT/tls.ext" -out "$OUT/tls.crt" 2>/dev/null
  rm -f "$OUT/tls.csr" "$OUT/tls.ext" "$OUT/ca.srl"
  echo "made $SHOWN/tls.crt ($SANS)"
fi

if [[ ! -s $OUT/$CLIENT.key ]]; then
  # 32 random bytes as hex: no newline, nothing a header or a shell would mangle.
  (umask 077 && openssl rand -hex 32 | tr -d '\n' >"$OUT/$CLIENT.key")
  echo "made $SHOWN/$CLIENT.key"
fi

# tfgate hashes the key's bytes (UTF-8) with SHA-256, as `tfgate hash-key` prints it.
digest=$(openssl dgst -sha256 -r <"$OUT/$CLIENT.key" | cut -d' ' -f1)
cat >"$OUT/keys.toml" <<EOF
# tfgate's key file for docker-compose.secure.yml (made by scripts/compose_secrets.sh).
[keys.$CLIENT]
sha256 = ["$digest"]
EOF

{
  echo "# Made by scripts/compose_secrets.sh from config/tfgate.toml and config/auth.toml:"
  echo "# edit those two and run it again. Paths are relative to where the stack mounts this"
  echo "# file, /srv/tfgate/secure/, beside /srv/tfgate/models/."
  echo
  cat "$ROOT/config/tfgate.toml"
  echo
  cat "$ROOT/config/auth.toml"
} >"$OUT/tfgate.toml"

# tfgate runs as an unprivileged user in its container, and compose mounts these files with
# the modes they have here: what tfgate reads must be readable by others. OUT_DIR itself is
# the owner's only, and the CA's key and the API key never leave it.
chmod 644 "$OUT/ca.pem" "$OUT/tls.crt" "$OUT/tls.key" "$OUT/keys.toml" "$OUT/tfgate.toml"
chmod 600 "$OUT/ca.key" "$OUT/$CLIENT.key"

cat <<EOF

Secrets for docker-compose.secure.yml are in $SHOWN/. Start the stack:

  docker compose -f docker-compose.yml -f docker-compose.secure.yml up --build

Call it as the client $CLIENT, over TLS (the key is read from its file, not shown):

  export TFGATE_KEY="\$(cat $SHOWN/$CLIENT.key)"
  curl --cacert $SHOWN/ca.pem -H "authorization: Bearer \$TFGATE_KEY" \\
    -d '{"instances": [1.0, 2.0, 5.0]}' https://localhost:8081/v1/models/half_plus_two:predict
  grpcurl -cacert $SHOWN/ca.pem -H "authorization: Bearer \$TFGATE_KEY" \\
    -d '{"model": "half_plus_two", "inputs": {"x": {"floats": [1, 2, 5]}}}' \\
    localhost:8080 tfgate.v1.InferenceService/Predict
EOF
