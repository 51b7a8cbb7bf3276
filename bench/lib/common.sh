# Shared by the benchmark scripts (sourced): tool installation, readiness waits, figures, and
# the shop fixture the checkout benchmarks (api.sh, events.sh) measure against.

# need CMD PACKAGE: installs PACKAGE with apt when CMD is missing.
need() {
    command -v "$1" >/dev/null 2>&1 && return
    echo "installing $2 for $1" >&2
    apt-get install -y -qq "$2" >/dev/null
}

# Waits up to 60 s for `url` to answer 2xx.
wait_ready() {
    local url=$1
    for _ in $(seq 1 600); do
        if curl -fsS -o /dev/null "$url" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "not ready: $url" >&2
    return 1
}

# The median of the numbers on stdin, one per line.
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
# a / b with three decimals (0 when b is 0).
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.3f", a/b; else print 0}'; }

# seed_buyers PSQL COUNT: COUNT customers `bench-N@example.com`, each with an empty cart, and
# stock far above what a run can sell, written with the psql function PSQL; sets FIRST_UID to
# the first buyer's id.
seed_buyers() {
    local psql_fn=$1 count=$2
    "$psql_fn" <<SQL
UPDATE products SET stock = 1000000000;
INSERT INTO users (email, display_name, password_hash, role)
    SELECT 'bench-' || g || '@example.com', 'Bench ' || g, 'not-a-hash', 'customer'
    FROM generate_series(1, $count) AS g;
INSERT INTO carts (user_id) SELECT id FROM users WHERE email LIKE 'bench-%';
ANALYZE;
SQL
    FIRST_UID=$("$psql_fn" -At -c "SELECT min(id) FROM users WHERE email LIKE 'bench-%'")
}

# refill_carts PSQL: gives every buyer's cart one line of a random product (quantity 1..3).
refill_carts() {
    "$1" <<'SQL'
DELETE FROM cart_items;
INSERT INTO cart_items (cart_id, product_id, quantity)
    SELECT c.id, p.ids[1 + floor(random() * array_length(p.ids, 1))::int],
           1 + floor(random() * 3)::int
    FROM carts c CROSS JOIN (SELECT array_agg(id) AS ids FROM products) p
    WHERE c.user_id IS NOT NULL;
-- The refill leaves a table's worth of dead rows, and each run writes more: clean up and
-- flush now, so autovacuum and checkpoints do not land inside the next measured run (on
-- whichever side happens to run then).
VACUUM ANALYZE;
CHECKPOINT;
SQL
}

# mint_tokens PSQL SECRET KID OUT: one JWT per buyer, in user id order, into OUT (one a line),
# signed HS256 with the api's secret and key id.
mint_tokens() {
    "$1" -At -F ' ' -c "SELECT id, email FROM users WHERE email LIKE 'bench-%' ORDER BY id" |
        python3 -c '
import base64, hashlib, hmac, json, sys, time
secret, kid, out = sys.argv[1].encode(), sys.argv[2], sys.argv[3]
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")
head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}, separators=(",", ":")).encode())
now = int(time.time())
with open(out, "w") as f:
    for row in sys.stdin.read().split("\n"):
        if not row:
            continue
        uid, email = row.split(" ")
        claims = {"sub": uid, "email": email, "role": "customer", "iat": now, "exp": now + 3600}
        body = head + b"." + b64(json.dumps(claims, separators=(",", ":")).encode())
        sig = b64(hmac.new(secret, body, hashlib.sha256).digest())
        f.write((body + b"." + sig).decode() + "\n")
' "$2" "$3" "$4"
}

# nats_delete_stream NATS_URL NAME: deletes a JetStream stream a benchmark created, over the
# plain NATS protocol (no client needed), so runs do not pile streams up on the server.
nats_delete_stream() {
    local hostport=${1#nats://}
    exec {fd}<>"/dev/tcp/${hostport%:*}/${hostport##*:}" || return 0
    printf 'CONNECT {"verbose":false}\r\nSUB _INBOX.bench_delete 1\r\nPUB $JS.API.STREAM.DELETE.%s _INBOX.bench_delete 0\r\n\r\nPING\r\n' "$2" >&$fd
    timeout 2 grep -q -m1 'success' <&$fd || true
    exec {fd}>&-
}
