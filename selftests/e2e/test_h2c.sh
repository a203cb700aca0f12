#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# test_h2c.sh - HTTP/2 (h2c) and gRPC in the lab's test tools, without a lab:
# `sl-echo serve` on the loopback of a throwaway network namespace (unshare -n;
# it goes away with the server), queried with sl-h2c (plain HTTP/2, gRPC Echo,
# EchoTwo, EchoThree, an unknown service; TLS through a socat relay when socat
# is there) and curl --http2-prior-knowledge; HTTP/1.1 and line mode on the
# same port must still work. Binaries from $SLUICE_BUILD (default build/).
source "$(dirname "$0")/lib.sh"

BIN=${SLUICE_BUILD:-$E2E_REPO/build}
PORT=8080
SVC=gateway_api_conformance.echo_basic.grpcecho.GrpcEcho
POD=grpc-infra-backend-v1-6d9f8b7c5d-x2k4q
NS=gateway-conformance-infra
SRV= RELAY=
# JSON is checked with Python; the system one starts in a tenth of the time of a pyenv shim.
PY=$(command -v /usr/bin/python3 || command -v python3)

need_root h2c
if ! unshare -n true 2>/dev/null; then
	skip h2c "cannot make a network namespace (unshare -n)"
	exit 0
fi
for b in sl-echo sl-h2c; do
	[ -x "$BIN/$b" ] || { fail "binaries" "no $BIN/$b (make tools)"; exit 1; }
done
cleanup() {
	[ -n "$RELAY" ] && kill "$RELAY" 2>/dev/null
	[ -n "$SRV" ] && kill "$SRV" 2>/dev/null
	wait 2>/dev/null
}
trap 'rc=$?; cleanup; (exit $rc); e2e_finish' EXIT

# The server: its own network namespace (unshare execs, so $! is the server).
unshare -n -- bash -c 'ip link set lo up && exec "$0" "$@"' "$BIN/sl-echo" serve --pod "$POD" \
	--namespace "$NS" --service grpc-infra-backend-v1 --tcp "$PORT" \
	--ready-file "$E2E_TMP/ready" >"$E2E_TMP/server.log" 2>&1 &
SRV=$!
if ! wait_until 5 test -s "$E2E_TMP/ready"; then
	fail "sl-echo serve starts" "$(tail -n 3 "$E2E_TMP/server.log")"
	exit 1
fi
pass "sl-echo serve starts in its own netns"

# in_ns CMD... : run CMD in the server's network namespace. (In the background
# call nsenter itself, so that $! is the command: nsenter execs it.)
in_ns() { nsenter -t "$SRV" -n -- "$@"; }
h2c() { in_ns "$BIN/sl-h2c" --timeout-ms 3000 "$@"; }
# jq_ok NAME JSON PYEXPR : PYEXPR (over j, the parsed JSON) must be true.
jq_ok() {
	local name=$1 json=$2 expr=$3
	if "$PY" -c 'import json,sys; j=json.loads(sys.argv[1]); sys.exit(0 if eval(sys.argv[2]) else 1)' \
		"$json" "$expr" 2>/dev/null; then
		pass "$name"
	else
		fail "$name" "not true: $expr, in:"
		echo "$json" | tail -c 2000 | sed 's/^/    /'
	fi
}
# echo_of JSON : the echo body inside sl-h2c's answer.
echo_of() { "$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["body"])' "$1" 2>/dev/null; }

# ---- plain HTTP/2
out=$(h2c --header 'My-Header: v1' --header 'my-header: v2' --header 'X-Echo-Set-Header: X-Foo:bar,X-Foo:baz' \
	--header 'Host: echo.example' "http://127.0.0.1:$PORT/hello?x=1&y=2")
check "sl-h2c: plain GET answered (exit 0)" test -n "$out"
jq_ok "h2: status 200, JSON content-type" "$out" \
	'j["status"] == 200 and j["headers"]["content-type"] == ["application/json"]'
e=$(echo_of "$out")
jq_ok "h2: echo shows proto HTTP/2.0, path, method, host from :authority" "$e" \
	'j["proto"] == "HTTP/2.0" and j["path"] == "/hello?x=1&y=2" and j["method"] == "GET" and j["host"] == "echo.example"'
jq_ok "h2: headers canonicalised, repeated values kept, no Host" "$e" \
	'j["headers"]["My-Header"] == ["v1", "v2"] and "Host" not in j["headers"] and ":path" not in str(j["headers"])'
jq_ok "h2: namespace, service, pod" "$e" \
	'j["namespace"] == "'$NS'" and j["pod"] == "'$POD'" and j["service"] == "grpc-infra-backend-v1"'
jq_ok "h2: X-Echo-Set-Header sets a (lower-case) response header" "$out" 'j["headers"]["x-foo"] == ["bar,baz"]'

out=$(h2c "http://127.0.0.1:$PORT/status/418")
jq_ok "h2: /status/418 answers 418" "$out" 'j["status"] == 418'
out=$(h2c "http://127.0.0.1:$PORT/status/204")
jq_ok "h2: /status/204 answers 204 with no body" "$out" 'j["status"] == 204 and j["body"] == ""'
out=$(h2c --method HEAD "http://127.0.0.1:$PORT/head")
jq_ok "h2: HEAD has a content-length and no body" "$out" \
	'j["status"] == 200 and int(j["headers"]["content-length"][0]) > 0 and j["body"] == ""'
out=$(h2c --method POST --data 'some body' "http://127.0.0.1:$PORT/post")
jq_ok "h2: POST with a body is echoed" "$out" 'json.loads(j["body"])["method"] == "POST"'
out=$(h2c "http://[::1]:$PORT/v6")
jq_ok "h2: IPv6 loopback" "$out" 'json.loads(j["body"])["remote"].startswith("[::1]:")'

# ?delay= holds only that answer
t0=$(date +%s%N)
out=$(h2c "http://127.0.0.1:$PORT/slow?delay=400ms")
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
jq_ok "h2: ?delay=400ms answered" "$out" 'j["status"] == 200'
check "h2: ... after at least 400 ms (took $ms ms)" test "$ms" -ge 400
nsenter -t "$SRV" -n -- "$BIN/sl-h2c" --timeout-ms 5000 "http://127.0.0.1:$PORT/slower?delay=1500ms" \
	>"$E2E_TMP/slow.json" 2>&1 &
slow=$!
sleep 0.1
t0=$(date +%s%N)
out=$(h2c "http://127.0.0.1:$PORT/quick")
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
jq_ok "h2: a delayed answer does not hold other connections" "$out" 'j["status"] == 200'
check "h2: ... the other answer came at once ($ms ms)" test "$ms" -lt 1000
wait "$slow"
check "h2: the delayed answer came too" grep -q '"status": 200' "$E2E_TMP/slow.json"
check "sl-h2c: --timeout-ms bounds the exchange (exit 1)" \
	bash -c '! nsenter -t "$1" -n -- "$2" --timeout-ms 200 "http://127.0.0.1:$3/x?delay=2s"' _ "$SRV" "$BIN/sl-h2c" "$PORT"
check "sl-h2c: a refused connection is exit 1" \
	bash -c '! nsenter -t "$1" -n -- "$2" --timeout-ms 1000 "http://127.0.0.1:1/" 2>/dev/null' _ "$SRV" "$BIN/sl-h2c"

# ---- gRPC
out=$(h2c --header version:two --header 'Color: orange' --grpc "$SVC/Echo" "http://127.0.0.1:$PORT")
jq_ok "grpc Echo: grpc-status 0 in the trailers" "$out" \
	'j["grpc_status"] == 0 and j["grpc_status_from"] == "trailers" and j["trailers"]["grpc-status"] == ["0"] and j["headers"]["content-type"] == ["application/grpc"]'
jq_ok "grpc Echo: fully_qualified_method" "$out" \
	'j["grpc_response"]["assertions"]["fully_qualified_method"] == "/'$SVC'/Echo"'
jq_ok "grpc Echo: context namespace, pod, service_name" "$out" \
	'j["grpc_response"]["assertions"]["context"] == {"namespace": "'$NS'", "ingress": "", "service_name": "grpc-infra-backend-v1", "pod": "'$POD'"}'
jq_ok "grpc Echo: authority and metadata (lower-case, :authority, no te)" "$out" \
	'(lambda a, h: a["authority"] == "127.0.0.1:'$PORT'" and {"key": "version", "value": "two"} in h and {"key": "color", "value": "orange"} in h and {"key": ":authority", "value": "127.0.0.1:'$PORT'"} in h and not any(x["key"] in ("te", ":path", "host") for x in h))(j["grpc_response"]["assertions"], j["grpc_response"]["assertions"]["headers"])'
out=$(h2c --authority grpc.example:80 --grpc "$SVC/EchoTwo" "http://127.0.0.1:$PORT")
jq_ok "grpc EchoTwo: OK, method EchoTwo, authority from --authority" "$out" \
	'j["grpc_status"] == 0 and j["grpc_response"]["assertions"]["fully_qualified_method"] == "/'$SVC'/EchoTwo" and j["grpc_response"]["assertions"]["authority"] == "grpc.example:80"'
out=$(h2c --grpc "$SVC/EchoThree" "http://127.0.0.1:$PORT")
jq_ok "grpc EchoThree: 12 Unimplemented, trailers only" "$out" \
	'j["grpc_status"] == 12 and j["grpc_status_name"] == "Unimplemented" and j["grpc_status_from"] == "headers" and j["grpc_response"] is None and "not implemented" in j["grpc_message"]'
out=$(h2c --grpc "$SVC/NoSuchMethod" "http://127.0.0.1:$PORT")
jq_ok "grpc unknown method: 12" "$out" 'j["grpc_status"] == 12 and "unknown method NoSuchMethod" in j["grpc_message"]'
out=$(h2c --grpc "other.Service/Echo" "http://127.0.0.1:$PORT")
jq_ok "grpc unknown service: 12" "$out" 'j["grpc_status"] == 12 and "unknown service other.Service" in j["grpc_message"]'
out=$(h2c --grpc "$SVC/Echo" "http://127.0.0.1:$PORT/ignored/path")
jq_ok "grpc: --grpc sets the path" "$out" 'j["grpc_status"] == 0'

# ---- curl (HTTP/2 prior knowledge, one URL per run: curl 7.88 cannot reuse such a connection)
if command -v curl >/dev/null; then
	out=$(in_ns curl -sS --max-time 5 --http2-prior-knowledge -H 'X-Echo-Set-Header: X-Bar:1' -D - \
		"http://127.0.0.1:$PORT/curl?z=1" 2>&1)
	expect_contains "curl --http2-prior-knowledge: HTTP/2 200" "$out" "HTTP/2 200"
	expect_contains "curl --http2-prior-knowledge: proto HTTP/2.0" "$out" '"proto": "HTTP/2.0"'
	expect_contains "curl --http2-prior-knowledge: echo-set header" "$out" "x-bar: 1"
	out=$(in_ns curl -sS --max-time 5 --http2-prior-knowledge -X POST -H 'content-type: application/grpc' \
		-H 'te: trailers' --data-binary @<(printf '\0\0\0\0\0') -D - -o /dev/null \
		"http://127.0.0.1:$PORT/$SVC/EchoThree" 2>&1)
	expect_contains "curl gRPC EchoThree: grpc-status 12" "$out" "grpc-status: 12"
	out=$(in_ns curl -sS --max-time 5 "http://127.0.0.1:$PORT/h1" 2>&1)
	expect_contains "curl HTTP/1.1 still served on the same port" "$out" '"proto": "HTTP/1.1"'
	out=$(in_ns curl -sS --max-time 5 --http2 "http://127.0.0.1:$PORT/upgrade" 2>&1)
	expect_contains "an h2c Upgrade request is answered in HTTP/1.1" "$out" '"proto": "HTTP/1.1"'
else
	skip "curl" "no curl"
fi

# ---- the other modes on the same port
out=$(in_ns "$BIN/sl-echo" probe tcp 127.0.0.1 "$PORT" --count 3 --line hello 2>&1)
expect_contains "line mode still served on the same port" "$out" "summary ok=3 err=0 pods=$POD:3"

# ---- a broken HTTP/2 client does not hurt the server
in_ns bash -c 'exec 3<>/dev/tcp/127.0.0.1/'"$PORT"' && printf "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff\xff\xff\xff\xff\xff" >&3 && timeout 2 cat <&3 >/dev/null; exec 3<&-' \
	>/dev/null 2>&1
in_ns bash -c 'exec 3<>/dev/tcp/127.0.0.1/'"$PORT"' && printf "PRI * HTTP/2.0\r\n" >&3; exec 3<&-' >/dev/null 2>&1
out=$(h2c "http://127.0.0.1:$PORT/after-garbage")
jq_ok "the server still answers after protocol errors" "$out" 'j["status"] == 200'

# ---- TLS: sl-h2c over TLS (h2, prior knowledge) through a socat TLS relay
if command -v socat >/dev/null && command -v openssl >/dev/null; then
	(cd "$E2E_TMP" &&
		openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=test-ca &&
		openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=echo.example &&
		printf 'subjectAltName=DNS:echo.example,DNS:*.wild.example\n' >ext &&
		openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 \
			-extfile ext) >"$E2E_TMP/openssl.log" 2>&1
	nsenter -t "$SRV" -n -- socat \
		"OPENSSL-LISTEN:8443,reuseaddr,fork,cert=$E2E_TMP/srv.pem,key=$E2E_TMP/srv.key,verify=0" \
		"TCP:127.0.0.1:$PORT" </dev/null >/dev/null 2>"$E2E_TMP/socat.log" &
	RELAY=$!
	wait_until 5 in_ns bash -c 'exec 3<>/dev/tcp/127.0.0.1/8443' || true
	out=$(h2c --cacert "$E2E_TMP/ca.pem" --sni echo.example "https://127.0.0.1:8443/tls")
	jq_ok "TLS: h2 over TLS, verified against --cacert, SNI echo.example" "$out" \
		'j["status"] == 200 and json.loads(j["body"])["proto"] == "HTTP/2.0"'
	out=$(h2c --cacert "$E2E_TMP/ca.pem" --sni a.wild.example --grpc "$SVC/Echo" "https://127.0.0.1:8443")
	jq_ok "TLS: gRPC over TLS, wildcard name" "$out" 'j["grpc_status"] == 0'
	out=$(h2c --cacert "$E2E_TMP/ca.pem" --sni other.example "https://127.0.0.1:8443/tls" 2>&1)
	expect_contains "TLS: a name the certificate lacks fails verification" "$out" "certificate verify failed"
	out=$(h2c --sni other.example "https://127.0.0.1:8443/tls")
	jq_ok "TLS: without --cacert nothing is verified" "$out" 'j["status"] == 200'
	kill "$RELAY" 2>/dev/null
	wait "$RELAY" 2>/dev/null
	RELAY=
else
	skip "TLS" "no socat or openssl"
fi

# ---- the request log (server.log): one line per request, HTTP/2 and gRPC too
kill "$SRV" 2>/dev/null
wait "$SRV" 2>/dev/null
SRV=
log=$(cat "$E2E_TMP/server.log")
expect_contains "log: the HTTP/2 request" "$log" "http GET /hello?x=1&y=2 host=echo.example peer=127.0.0.1:"
expect_contains "log: the gRPC call" "$log" "http POST /$SVC/EchoTwo host=grpc.example:80 peer=127.0.0.1:"
expect_contains "log: the curl h2c request" "$log" "http GET /curl?z=1 host=127.0.0.1:$PORT peer="
expect_contains "log: the HTTP/1.1 request" "$log" "http GET /h1 host=127.0.0.1:$PORT peer="
