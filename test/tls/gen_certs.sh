#!/bin/sh
# Makes the throw-away certificates the TLS tests use, in DIR (created): a test CA and a
# second, untrusted CA; server and client certificates with DNS, IP and SPIFFE URI SANs; an
# expired server certificate; a revoked client certificate and the CA's CRL. Nothing here is
# committed: every test run makes its own keys.
set -eu
dir=$1
mkdir -p "$dir"
cd "$dir"
[ -f done ] && exit 0
q() { "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; "$@"; exit 1; }; }

ca() {  # name subject
  q openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/CN=$2" -keyout "$1.key" -out "$1.pem" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
}
# leaf name ca san...
leaf() {
  name=$1 ca=$2 san=$3
  q openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/O=Sluice/CN=$name" \
    -keyout "$name.key" -out "$name.csr"
  printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n' \
    "$san" > "$name.ext"
  q openssl x509 -req -in "$name.csr" -CA "$ca.pem" -CAkey "$ca.key" -CAcreateserial -days 365 \
    -extfile "$name.ext" -out "$name.pem"
}

ca ca "Sluice Test CA"
ca other_ca "Other Test CA"
leaf server ca "DNS:localhost,DNS:upstream.test,IP:127.0.0.1,URI:spiffe://cluster.local/ns/default/sa/server"
leaf client ca "URI:spiffe://cluster.local/ns/default/sa/client"
leaf client2 ca "URI:spiffe://cluster.local/ns/other/sa/intruder"
leaf untrusted_client other_ca "URI:spiffe://cluster.local/ns/default/sa/client"

# An expired server certificate and a revoked client, through `openssl ca` (dates and CRLs).
mkdir -p ca_db
: > ca_db/index.txt
echo 1000 > ca_db/serial
echo 1000 > ca_db/crlnumber
cat > ca_db/ca.cnf <<CNF
[ca]
default_ca = test
[test]
dir = ca_db
database = ca_db/index.txt
serial = ca_db/serial
crlnumber = ca_db/crlnumber
new_certs_dir = ca_db
certificate = ca.pem
private_key = ca.key
default_md = sha256
default_crl_days = 30
policy = any
copy_extensions = copy
unique_subject = no
[any]
commonName = supplied
organizationName = optional
CNF
q openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/O=Sluice/CN=expired" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout expired.key -out expired.csr
q openssl ca -batch -config ca_db/ca.cnf -in expired.csr -out expired.pem \
  -startdate 20200101000000Z -enddate 20200201000000Z
q openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/O=Sluice/CN=revoked" \
  -addext "subjectAltName=URI:spiffe://cluster.local/ns/default/sa/client" \
  -keyout revoked.key -out revoked.csr
q openssl ca -batch -config ca_db/ca.cnf -in revoked.csr -out revoked.pem -days 365
q openssl ca -batch -config ca_db/ca.cnf -revoke revoked.pem
q openssl ca -batch -config ca_db/ca.cnf -gencrl -out ca.crl
touch done
