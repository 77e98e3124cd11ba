#!/usr/bin/env bash
# with-services.sh — run a command against real, throwaway test services.
#
# Usage: scripts/with-services.sh <command> [args...]
#
# Used by `make test`, `make bench` and CI. It makes sure these services exist,
# exports where they are, runs <command>, stops every service it started and
# exits with <command>'s exit status:
#
#   service       env var(s) exported                     given? (set, non-empty => nothing started)
#   Redis         TEST_REDIS_URL                           TEST_REDIS_URL, else REDIS_URL
#   PostgreSQL 15 TEST_DATABASE_URL                        TEST_DATABASE_URL
#   S3 (versitygw) TEST_S3_ENDPOINT TEST_S3_ACCESS_KEY      TEST_S3_ENDPOINT
#                 TEST_S3_SECRET_KEY TEST_S3_REGION
#   stripe-mock   TEST_STRIPE_API_BASE                     TEST_STRIPE_API_BASE
#   Chromium      TEST_CHROMIUM (path; only if SERVICES_CHROMIUM=1, the default)
#
# PORTAL_REQUIRE_SERVICES is passed through unchanged.
#
# Knobs:
#   SERVICES_DURABLE=1     PostgreSQL keeps fsync/synchronous_commit/full_page_writes on
#                          (benchmarks); default is off for speed.
#   SERVICES_CHROMIUM=0    do not check for / install Chromium.
#   SERVICES_STOP_TIMEOUT  seconds the command gets after a forwarded SIGTERM/SIGHUP
#   SERVICES_PG_OPTS       more PostgreSQL server settings, e.g. "-c log_checkpoints=on"
#                          before it is killed (default 30).
#
# Missing tools are installed when possible (apt-get as root: redis-server,
# postgresql-15, chromium; `go install`: versitygw, stripe-mock). When that is
# not possible the script says what to install and exits non-zero without
# running the command. Services run on free loopback ports, each in its own
# process group, with data and logs in one temporary directory that is removed
# on exit (EXIT/INT/TERM/HUP; a watchdog also cleans up if this script is
# SIGKILLed).
# shellcheck disable=SC2317,SC2016,SC2094 # start_* are called indirectly
set -euo pipefail

readonly PROG=with-services
if ((BASH_VERSINFO[0] < 5)); then
	echo "$PROG: needs bash >= 5.0 (this is $BASH_VERSION)" >&2
	exit 2
fi
readonly VERSITYGW_MOD=github.com/versity/versitygw/cmd/versitygw@v1.8.0
readonly STRIPE_MOCK_MOD=github.com/stripe/stripe-mock@v0.203.0
readonly PG_MAJOR=15
SELF=$(readlink -f "${BASH_SOURCE[0]}")
readonly SELF

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }

# Microseconds since the epoch (EPOCHREALTIME's separator follows the locale).
now_us() { local t=${EPOCHREALTIME/[.,]/}; printf '%s' "$((10#$t))"; }
since() {
	local us=$(($(now_us) - $1))
	printf '%d.%01ds' $((us / 1000000)) $(((us % 1000000) / 100000))
}

# True if process $1 exists and is not a zombie (PID 1 here may reap slowly).
alive() {
	local s
	[[ -r /proc/$1/stat ]] || { kill -0 "$1" 2>/dev/null; return; }
	s=$(<"/proc/$1/stat") 2>/dev/null || return 1
	s=${s##*) }
	[[ ${s:0:1} != Z ]]
}

# ---------------------------------------------------------------------------
# Shared state: everything lives under $_WS_DIR (exported to the helpers).
#   $_WS_DIR/logs/      service logs
#   $_WS_DIR/state/     starter.<svc> (pgid), <svc>.env, pgdata.<svc>
#   $_WS_DIR/pgids/     one file per started daemon process group
# ---------------------------------------------------------------------------
set_paths() {
	LOGDIR=$_WS_DIR/logs
	STATE=$_WS_DIR/state
	PGID_DIR=$_WS_DIR/pgids
}

# Stop every process group we started and remove the temp dir. Used by the
# main process (EXIT trap) and by the watchdog if the main process vanished.
stop_everything() {
	set +e
	local f pid data leaders=() groups=() deadline
	shopt -s nullglob
	# 1. Starters still running (installs, initdb, ...): each is its own group.
	for f in "$STATE"/starter.*; do
		pid=$(<"$f") || continue
		[[ $pid =~ ^[0-9]+$ ]] || continue
		kill -TERM -- "-$pid" 2>/dev/null && groups+=("$pid") && leaders+=("$pid")
	done
	deadline=$(($(now_us) + 2000000))
	for pid in "${leaders[@]}"; do
		while alive "$pid" && (($(now_us) < deadline)); do sleep 0.05; done
	done
	leaders=()
	# 2. Daemons (redis, versitygw, stripe-mock), each its own session/group.
	for f in "$PGID_DIR"/*; do
		pid=$(<"$f") || continue
		[[ $pid =~ ^[0-9]+$ ]] || continue
		kill -TERM -- "-$pid" 2>/dev/null
		groups+=("$pid") leaders+=("$pid")
	done
	# 3. PostgreSQL: immediate shutdown of the postmaster (pg_ctl made it a
	#    session leader, so its backends are in its process group).
	for f in "$STATE"/pgdata.*; do
		data=$(<"$f") || continue
		[[ -r $data/postmaster.pid ]] || continue
		pid=$(head -n1 "$data/postmaster.pid" 2>/dev/null)
		[[ $pid =~ ^[0-9]+$ ]] || continue
		[[ $(cat "/proc/$pid/comm" 2>/dev/null) == postgres ]] || continue
		kill -QUIT "$pid" 2>/dev/null
		groups+=("$pid") leaders+=("$pid")
	done
	# 4. Give them up to 10s, then SIGKILL whole groups (also sweeps stragglers).
	deadline=$(($(now_us) + 10000000))
	for pid in "${leaders[@]}"; do
		while alive "$pid" && (($(now_us) < deadline)); do sleep 0.05; done
	done
	for pid in "${groups[@]}"; do
		kill -KILL -- "-$pid" 2>/dev/null
	done
	# Anything still alive in the pg data dir? (postmaster started late)
	for f in "$STATE"/pgdata.*; do
		data=$(<"$f") || continue
		pid=$(head -n1 "$data/postmaster.pid" 2>/dev/null)
		if [[ $pid =~ ^[0-9]+$ && $(cat "/proc/$pid/comm" 2>/dev/null) == postgres ]]; then
			kill -KILL -- "-$pid" 2>/dev/null
			kill -KILL "$pid" 2>/dev/null
		fi
	done
	rm -rf -- "$_WS_DIR"
	shopt -u nullglob
}

# ---------------------------------------------------------------------------
# Helpers for the starters.
# ---------------------------------------------------------------------------
IS_ROOT=0
[[ $(id -u) == 0 ]] && IS_ROOT=1
CAN_APT=0
((IS_ROOT)) && command -v apt-get >/dev/null 2>&1 && CAN_APT=1

# fail <message...>: print an error (and optional log tail) and end the starter.
fail() {
	log "ERROR: $*"
	exit 1
}
show_tail() { # logfile [lines]
	[[ -s $1 ]] || return 0
	log "---- last ${2:-30} lines of $1 ----"
	tail -n "${2:-30}" "$1" | sed 's/^/    /' >&2
	log "----"
}

# Write an exported variable for the main process to source.
put_env() { # svc name value
	printf 'export %s=%q\n' "$2" "$3" >>"$STATE/$1.env"
}

rand_u32() { od -An -N4 -tu4 /dev/urandom | tr -d ' \n'; }
rand_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }

port_in_use() {
	local out
	if command -v ss >/dev/null 2>&1 && out=$(ss -Htan "( sport = :$1 )" 2>/dev/null); then
		[[ -n $out ]] && return 0
	fi
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# A random free TCP port in 20000-60000, preferring the part below the kernel's
# ephemeral range so outgoing connections cannot have grabbed it meanwhile.
free_port() {
	local lo=20000 hi=60000 eph p i
	if read -r eph _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null &&
		((eph > lo + 2000 && eph <= hi)); then
		hi=$((eph - 1))
	fi
	for ((i = 0; i < 200; i++)); do
		p=$((lo + $(rand_u32) % (hi - lo + 1)))
		port_in_use "$p" || { printf '%s' "$p"; return 0; }
	done
	return 1
}

# spawn <name> <logfile> <cmd...>: start a daemon in its own session (so it
# is its own process group and does not get the terminal's Ctrl-C), record
# the group for cleanup. Sets SPAWNED_PID.
spawn() {
	local name=$1 logf=$2
	shift 2
	setsid "$@" </dev/null >>"$logf" 2>&1 &
	SPAWNED_PID=$!
	printf '%s\n' "$SPAWNED_PID" >"$PGID_DIR/$name.$SPAWNED_PID"
}
unspawn() { # pid: forget (and kill) a daemon whose start failed
	kill -KILL -- "-$1" 2>/dev/null || true
	rm -f "$PGID_DIR"/*."$1"
}

# wait_ready <timeout-s> <pid> <check cmd...>: 0 ready, 1 timeout, 2 died.
wait_ready() {
	local deadline=$(($(now_us) + $1 * 1000000)) pid=$2
	shift 2
	while :; do
		"$@" && return 0
		alive "$pid" || { "$@" && return 0; return 2; }
		(($(now_us) < deadline)) || return 1
		sleep 0.05
	done
}

# Did the part of <logfile> after byte <offset> complain about a busy port?
port_clash() { # logfile offset
	tail -c +"$(($2 + 1))" "$1" 2>/dev/null | grep -qiE 'address already in use|could not bind|bind: '
}
log_size() { stat -c %s "$1" 2>/dev/null || echo 0; }

# start_on_free_port <tag> <program> <logfile> <timeout-s> <launch> <probe> [probe args...]
# Starts a daemon on a free loopback port: <launch> is called with the port
# and must spawn it (spawn), <probe> with the port and the probe args until
# it answers. A port taken between choosing it and binding it is retried
# (3 attempts); any other failure shows the log and fails. Sets PORT.
start_on_free_port() {
	local tag=$1 prog=$2 logf=$3 timeout=$4 launch=$5 probe=$6 attempt off rc pid
	shift 6
	for attempt in 1 2 3; do
		PORT=$(free_port) || fail "$tag: no free port found"
		off=$(log_size "$logf")
		"$launch" "$PORT"
		pid=$SPAWNED_PID
		rc=0
		wait_ready "$timeout" "$pid" "$probe" "$PORT" "$@" || rc=$?
		((rc == 0)) && return 0
		unspawn "$pid"
		if ((rc == 2)) && port_clash "$logf" "$off" && ((attempt < 3)); then
			log "$(printf '%-9s' "$tag:") port $PORT was taken; retrying"
			continue
		fi
		show_tail "$logf"
		fail "$prog did not start (log above)"
	done
}

# HTTP probe without curl: any HTTP status line counts as "answering".
http_answers() { # port path [header]
	(
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1:%s\r\n%s\r\n' "$2" "$1" "${3:+$3$'\r\n'}" >&3
		IFS= read -r -t 2 line <&3 || exit 1
		[[ $line == HTTP/* ]]
	) 2>/dev/null
}
redis_pong() { # port
	(
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		printf 'PING\r\n' >&3
		IFS= read -r -t 1 line <&3 || exit 1
		[[ $line == +PONG* ]]
	) 2>/dev/null
}

# apt_install <pkg...>: as root with apt-get; waits for the dpkg lock; runs
# `apt-get update` only when the package is unknown / its index is stale.
# apt-get runs in its own session so that our cleanup never kills dpkg half-way.
apt_install() {
	((CAN_APT)) || return 1
	local logf=$LOGDIR/apt-$1.log try=$LOGDIR/apt-$1.try tries=0 updated=0 i
	log "$1: not installed; running apt-get install -y $* (log: $logf)"
	while :; do
		tries=$((tries + 1))
		if DEBIAN_FRONTEND=noninteractive setsid apt-get -o DPkg::Lock::Timeout=600 \
			install -y "$@" </dev/null >"$try" 2>&1; then
			cat "$try" >>"$logf"
			return 0
		fi
		cat "$try" >>"$logf"
		# Another apt/dpkg is running (e.g. a background install): wait for it.
		if grep -qE '^E: (Could not get lock|Unable to acquire the dpkg frontend lock|Unable to lock)' "$try" &&
			((tries < 3)); then
			((tries == 1)) && log "$1: waiting for the dpkg lock (another apt-get is running)"
			sleep 3
			continue
		fi
		if ((!updated)) && grep -qiE 'Unable to locate package|has no installation candidate|Failed to fetch|Unable to fetch|404 +Not Found' "$try"; then
			updated=1
			log "$1: package unknown or index stale; running apt-get update"
			for i in $(seq 1 60); do
				setsid apt-get -o DPkg::Lock::Timeout=600 update </dev/null >>"$logf" 2>&1 && break
				sleep 5
			done
			continue
		fi
		show_tail "$logf"
		return 1
	done
}

# find_go_tool <name>: PATH, then $(go env GOBIN), $(go env GOPATH)/bin, ~/go/bin.
find_go_tool() {
	local name=$1 p
	p=$(command -v "$name" 2>/dev/null) && { printf '%s' "$p"; return 0; }
	if command -v go >/dev/null 2>&1; then
		p=$(go env GOBIN 2>/dev/null || true)
		[[ -n $p && -x $p/$name ]] && { printf '%s' "$p/$name"; return 0; }
		p=$(go env GOPATH 2>/dev/null || true)
		p=${p%%:*}
		[[ -n $p && -x $p/bin/$name ]] && { printf '%s' "$p/bin/$name"; return 0; }
	fi
	[[ -n ${HOME:-} && -x $HOME/go/bin/$name ]] && { printf '%s' "$HOME/go/bin/$name"; return 0; }
	return 1
}

# ensure_go_tool <name> <module@version> [note]: prints the binary's path.
ensure_go_tool() { # name module@version note env-var
	local name=$1 mod=$2 note=${3:-} var=${4:-} bin logf
	if bin=$(find_go_tool "$name"); then
		printf '%s' "$bin"
		return 0
	fi
	command -v go >/dev/null 2>&1 ||
		fail "$name not found and Go is not installed. Install Go, then run: go install $mod  — or set $var"
	logf=$LOGDIR/go-install-$name.log
	log "$name: not found; building it with 'go install $mod'${note:+ ($note)} (log: $logf)"
	# Runs in this starter's process group: cleanup kills it on Ctrl-C/TERM.
	if ! (cd "$_WS_DIR" && env -u GOFLAGS GO111MODULE=on go install "$mod") </dev/null >"$logf" 2>&1; then
		show_tail "$logf"
		fail "could not build $name. Run: go install $mod  — or set $var"
	fi
	bin=$(find_go_tool "$name") || fail "go install $mod succeeded but $name is not in PATH, GOBIN or GOPATH/bin"
	printf '%s' "$bin"
}

# ---------------------------------------------------------------------------
# Starters. Each runs as `with-services.sh __start <svc>` in its own session
# (process group) and writes $STATE/<svc>.env on success.
# ---------------------------------------------------------------------------
# The launchers of start_on_free_port (called with the port; they read the
# locals of the start_* function that called it).
launch_redis() {
	spawn redis "$logf" "$bin" --bind 127.0.0.1 --port "$1" --save '' --appendonly no \
		--databases 1024 --dir "$dir" --daemonize no --logfile ''
}
launch_versitygw() {
	spawn versitygw "$logf" "$bin" --port "127.0.0.1:$1" --access "$ak" --secret "$sk" \
		--region us-east-1 --keep-alive --quiet posix "$dir"
}
launch_stripe_mock() { # stripe-mock also needs an HTTPS port of its own
	local port2
	port2=$(free_port) || fail "stripe: no free port found"
	while [[ $port2 == "$1" ]]; do
		port2=$(free_port) || fail "stripe: no free port found"
	done
	spawn stripe-mock "$logf" "$bin" -http-addr "127.0.0.1:$1" -https-addr "127.0.0.1:$port2"
}

start_redis() {
	local t0 bin dir logf port
	t0=$(now_us)
	if [[ -n ${TEST_REDIS_URL:-} ]]; then
		put_env redis TEST_REDIS_URL "$TEST_REDIS_URL"
		log "redis:    using given TEST_REDIS_URL"
		return 0
	fi
	if [[ -n ${REDIS_URL:-} ]]; then
		put_env redis TEST_REDIS_URL "$REDIS_URL"
		log "redis:    using given REDIS_URL as TEST_REDIS_URL"
		return 0
	fi
	if ! bin=$(command -v redis-server 2>/dev/null); then
		if ((CAN_APT)); then
			apt_install redis-server || fail "apt-get install -y redis-server failed (see above)"
			bin=$(command -v redis-server 2>/dev/null) || bin=/usr/bin/redis-server
			[[ -x $bin ]] || fail "redis-server still not found after installing it"
		else
			fail "redis-server is not installed. Install it (as root): apt-get install -y redis-server  — or set TEST_REDIS_URL"
		fi
	fi
	dir=$_WS_DIR/redis
	mkdir -p "$dir"
	logf=$LOGDIR/redis.log
	start_on_free_port redis redis-server "$logf" 20 launch_redis redis_pong
	port=$PORT
	put_env redis TEST_REDIS_URL "redis://127.0.0.1:$port/0"
	log "redis:    started redis://127.0.0.1:$port/0 ($(since "$t0"))"
}

find_pg_bin() {
	local d
	for d in "${PG_BINDIR:-}" "/usr/lib/postgresql/$PG_MAJOR/bin"; do
		[[ -n $d && -x $d/initdb && -x $d/pg_ctl && -x $d/postgres ]] && { printf '%s' "$d"; return 0; }
	done
	d=$(command -v initdb 2>/dev/null) || return 1
	d=$(dirname "$(readlink -f "$d")")
	[[ -x $d/pg_ctl && -x $d/postgres ]] || return 1
	printf '%s' "$d"
}

start_postgres() {
	local t0 pgbin pgdir data sock logf port attempt off rc as_pg=() opts ready pid ver runuser
	t0=$(now_us)
	if [[ -n ${TEST_DATABASE_URL:-} ]]; then
		put_env postgres TEST_DATABASE_URL "$TEST_DATABASE_URL"
		log "postgres: using given TEST_DATABASE_URL"
		return 0
	fi
	if ! pgbin=$(find_pg_bin); then
		if ((CAN_APT)); then
			apt_install "postgresql-$PG_MAJOR" || fail "apt-get install -y postgresql-$PG_MAJOR failed (see above)"
			pgbin=$(find_pg_bin) || fail "PostgreSQL binaries still not found after installing postgresql-$PG_MAJOR"
		else
			fail "PostgreSQL $PG_MAJOR is not installed. Install it (as root): apt-get install -y postgresql-$PG_MAJOR  — or set TEST_DATABASE_URL"
		fi
	fi
	pgdir=$_WS_DIR/pg
	data=$pgdir/data
	sock=$pgdir/sock
	mkdir -p "$pgdir" "$sock"
	logf=$LOGDIR/postgres.log
	: >"$logf"
	if ((IS_ROOT)); then
		# initdb/postgres refuse to run as root: use the postgres user.
		if ! id -u postgres >/dev/null 2>&1; then
			PATH=$PATH:/usr/sbin:/sbin useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres 2>/dev/null ||
				fail "no 'postgres' user and could not create one (useradd --system postgres)"
		fi
		runuser=$(command -v runuser 2>/dev/null) || runuser=/usr/sbin/runuser
		[[ -x $runuser ]] || fail "runuser not found (apt-get install -y util-linux)"
		chown -R postgres: "$pgdir" "$logf"
		as_pg=("$runuser" -u postgres --)
	fi
	chmod 700 "$pgdir"
	printf '%s\n' "$data" >"$STATE/pgdata.postgres"
	cd "$pgdir" # initdb/pg_ctl complain if the cwd is unreadable for them
	if ! "${as_pg[@]}" "$pgbin/initdb" -D "$data" --auth=trust -U postgres -E UTF8 --locale=C \
		--no-sync >>"$logf" 2>&1 </dev/null; then
		show_tail "$logf"
		fail "initdb failed (log above)"
	fi
	# Unix socket paths are limited to ~107 bytes: with a very long TMPDIR go
	# TCP-only (pg_ctl -w and the tests only need TCP).
	((${#sock} <= 80)) || sock=""
	opts="-c listen_addresses=127.0.0.1 -c unix_socket_directories='$sock'"
	opts+=" -c max_connections=300 -c shared_buffers=128MB"
	# SERVICES_PG_OPTS: more server settings, for diagnosis (e.g.
	# "-c shared_preload_libraries=pg_stat_statements").
	[[ -z ${SERVICES_PG_OPTS:-} ]] || opts+=" $SERVICES_PG_OPTS"
	if [[ ${SERVICES_DURABLE:-0} != 1 ]]; then
		opts+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
	fi
	for attempt in 1 2 3; do
		port=$(free_port) || fail "postgres: no free port found"
		off=$(log_size "$logf")
		rc=0
		# pg_ctl starts the postmaster in its own session (setsid).
		"${as_pg[@]}" "$pgbin/pg_ctl" -D "$data" -l "$logf" -w -t 60 -s \
			-o "-p $port $opts" start </dev/null >>"$logf" 2>&1 || rc=$?
		if ((rc == 0)); then
			ready=0
			for _ in $(seq 1 100); do
				if [[ -x $pgbin/pg_isready ]]; then
					"$pgbin/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -t 2 && { ready=1; break; }
				elif command -v pg_isready >/dev/null 2>&1; then
					pg_isready -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -t 2 && { ready=1; break; }
				else
					(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && { ready=1; break; }
				fi
				sleep 0.1
			done
			((ready)) && break
			show_tail "$logf"
			fail "postgres started but pg_isready never succeeded on port $port"
		fi
		# A half-started postmaster (if any) must go before we retry.
		pid=$(head -n1 "$data/postmaster.pid" 2>/dev/null || true)
		[[ $pid =~ ^[0-9]+$ ]] && kill -KILL -- "-$pid" 2>/dev/null
		if port_clash "$logf" "$off" && ((attempt < 3)); then
			log "postgres: port $port was taken; retrying"
			sleep 0.2
			continue
		fi
		show_tail "$logf"
		fail "PostgreSQL did not start (log above)"
	done
	ver=$("$pgbin/postgres" --version 2>/dev/null | awk '{print $3}')
	put_env postgres TEST_DATABASE_URL "postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
	log "postgres: started ${ver:-?} on 127.0.0.1:$port$([[ ${SERVICES_DURABLE:-0} == 1 ]] && echo ' (durable)' || echo ' (fsync off)') ($(since "$t0"))"
}

start_s3() {
	local t0 bin dir logf ak sk port
	t0=$(now_us)
	if [[ -n ${TEST_S3_ENDPOINT:-} ]]; then
		put_env s3 TEST_S3_ENDPOINT "$TEST_S3_ENDPOINT"
		put_env s3 TEST_S3_REGION "${TEST_S3_REGION:-us-east-1}"
		log "s3:       using given TEST_S3_ENDPOINT"
		return 0
	fi
	bin=$(ensure_go_tool versitygw "$VERSITYGW_MOD" "takes ~3 minutes the first time" TEST_S3_ENDPOINT)
	dir=$_WS_DIR/s3
	mkdir -p "$dir"
	logf=$LOGDIR/versitygw.log
	ak=AK$(rand_hex 9)
	sk=$(rand_hex 20)
	start_on_free_port s3 versitygw "$logf" 30 launch_versitygw http_answers /
	port=$PORT
	put_env s3 TEST_S3_ENDPOINT "http://127.0.0.1:$port"
	put_env s3 TEST_S3_ACCESS_KEY "$ak"
	put_env s3 TEST_S3_SECRET_KEY "$sk"
	put_env s3 TEST_S3_REGION us-east-1
	log "s3:       started versitygw http://127.0.0.1:$port ($(since "$t0"))"
}

start_stripe() {
	local t0 bin logf port
	t0=$(now_us)
	if [[ -n ${TEST_STRIPE_API_BASE:-} ]]; then
		put_env stripe TEST_STRIPE_API_BASE "$TEST_STRIPE_API_BASE"
		log "stripe:   using given TEST_STRIPE_API_BASE"
		return 0
	fi
	bin=$(ensure_go_tool stripe-mock "$STRIPE_MOCK_MOD" "takes about a minute the first time" TEST_STRIPE_API_BASE)
	logf=$LOGDIR/stripe-mock.log
	start_on_free_port stripe stripe-mock "$logf" 30 launch_stripe_mock \
		http_answers /v1/customers "Authorization: Bearer sk_test_123"
	port=$PORT
	put_env stripe TEST_STRIPE_API_BASE "http://127.0.0.1:$port"
	log "stripe:   started stripe-mock http://127.0.0.1:$port ($(since "$t0"))"
}

find_chromium() {
	local c
	for c in chromium chromium-browser; do
		command -v "$c" 2>/dev/null && return 0
	done
	[[ -x /usr/bin/chromium ]] && { printf '%s' /usr/bin/chromium; return 0; }
	return 1
}

start_chromium() {
	local t0 bin
	t0=$(now_us)
	if [[ -n ${TEST_CHROMIUM:-} ]]; then
		put_env chromium TEST_CHROMIUM "$TEST_CHROMIUM"
		log "chromium: using given TEST_CHROMIUM"
		return 0
	fi
	if ! bin=$(find_chromium); then
		if ((CAN_APT)); then
			apt_install chromium || fail "apt-get install -y chromium failed (see above)"
			bin=$(find_chromium) || fail "chromium still not found after installing it"
		else
			fail "chromium is not installed. Install it (as root): apt-get install -y chromium  — or set TEST_CHROMIUM, or SERVICES_CHROMIUM=0"
		fi
	fi
	put_env chromium TEST_CHROMIUM "$bin"
	log "chromium: found $bin ($(since "$t0"))"
}

# ---------------------------------------------------------------------------
# Internal entry points (re-executions of this script).
# ---------------------------------------------------------------------------
if [[ ${1:-} == __start ]]; then
	set_paths
	"start_$2"
	exit 0
fi
if [[ ${1:-} == __watchdog ]]; then
	# Cleans up if the main script dies without running its EXIT trap (SIGKILL).
	set_paths
	trap '' INT HUP
	trap 'exit 0' TERM
	while alive "$_WS_MAIN_PID"; do sleep 1; done
	[[ -d $_WS_DIR ]] || exit 0
	# The command cannot work without its services: stop it too.
	cmd=$(cat "$STATE/cmd.pid" 2>/dev/null || true)
	[[ $cmd =~ ^[0-9]+$ ]] && alive "$cmd" && kill -TERM "$cmd" 2>/dev/null
	stop_everything
	exit 0
fi

# ---------------------------------------------------------------------------
# Main.
# ---------------------------------------------------------------------------
usage() {
	cat <<EOF
Usage: scripts/with-services.sh <command> [args...]

Starts throwaway Redis, PostgreSQL $PG_MAJOR, versitygw (S3) and stripe-mock (and
checks Chromium), exports TEST_REDIS_URL, TEST_DATABASE_URL, TEST_S3_ENDPOINT,
TEST_S3_ACCESS_KEY, TEST_S3_SECRET_KEY, TEST_S3_REGION, TEST_STRIPE_API_BASE and
TEST_CHROMIUM, runs <command>, stops the services and exits with its status.
A service whose variable is already set is used as given. See the header of
this script for the knobs (SERVICES_DURABLE, SERVICES_CHROMIUM, ...).
EOF
}

if (($# == 0)); then
	usage >&2
	exit 2
fi
case $1 in -h | --help)
	usage
	exit 0
	;;
esac

T0=$(now_us)
_WS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/with-services.XXXXXX")
_WS_MAIN_PID=$$
export _WS_DIR _WS_MAIN_PID
set_paths
chmod 711 "$_WS_DIR" # the postgres user must reach its own subdirectory
mkdir -p "$LOGDIR" "$STATE" "$PGID_DIR"
chmod 755 "$LOGDIR"
chmod 700 "$STATE" # holds the generated S3 secret

STOP_TIMEOUT=${SERVICES_STOP_TIMEOUT:-30}
[[ $STOP_TIMEOUT =~ ^[0-9]+$ ]] || STOP_TIMEOUT=30
CMD_PID=""
KILLER_PID=""
WATCHDOG_PID=""
SIGNALS=0
INTERRUPTED=0
declare -A STARTER_SVC=()

cleanup() {
	local rc=$?
	trap '' INT TERM HUP
	set +e
	if [[ -n $KILLER_PID ]]; then kill -KILL -- "-$KILLER_PID" 2>/dev/null; fi
	if [[ -n $CMD_PID ]] && alive "$CMD_PID"; then kill -KILL "$CMD_PID" 2>/dev/null; fi
	stop_everything
	if [[ -n $WATCHDOG_PID ]]; then kill -KILL -- "-$WATCHDOG_PID" 2>/dev/null; fi
	exit "$rc"
}

on_signal() {
	local sig=$1
	if [[ -z $CMD_PID ]]; then
		log "got SIG$sig during start-up; stopping services"
		exit $((128 + $(kill -l "$sig")))
	fi
	INTERRUPTED=1
	if [[ $sig == INT ]]; then
		# Ctrl-C already reached the command (same process group); pass it on
		# in case it was sent to this script alone. Never escalate: an
		# interactive command (psql) may use Ctrl-C itself.
		((SIGNALS++ > 0)) || log "got SIGINT; passing it to the command"
		kill -INT "$CMD_PID" 2>/dev/null || true
		return
	fi
	if [[ -z $KILLER_PID ]]; then
		log "got SIG$sig; passing it to the command and waiting for it to exit (at most ${STOP_TIMEOUT}s)"
		kill -s "$sig" "$CMD_PID" 2>/dev/null || true
		# Do not wait forever for a command that ignores it.
		setsid bash -c 'sleep "$1"; kill -KILL "$2" 2>/dev/null' _ \
			"$STOP_TIMEOUT" "$CMD_PID" </dev/null >/dev/null 2>&1 &
		KILLER_PID=$!
		disown "$KILLER_PID"
	else
		log "got SIG$sig again; killing the command"
		kill -KILL "$CMD_PID" 2>/dev/null || true
	fi
}

# If we were started with SIGINT ignored (e.g. as a background job of a
# script), the command should inherit that rather than get it reset below.
INT_IGNORED=0
[[ -n $(trap -p INT) ]] && INT_IGNORED=1

trap cleanup EXIT
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM
trap 'on_signal HUP' HUP

setsid bash "$SELF" __watchdog </dev/null >/dev/null 2>&1 &
WATCHDOG_PID=$!
disown "$WATCHDOG_PID"

services=(redis postgres s3 stripe)
[[ ${SERVICES_CHROMIUM:-1} == 1 ]] && services+=(chromium)

for svc in "${services[@]}"; do
	# setsid: each starter (and its installs/initdb) is its own process group.
	setsid bash "$SELF" __start "$svc" </dev/null &
	STARTER_SVC[$!]=$svc
	printf '%s\n' "$!" >"$STATE/starter.$svc"
done

# Wait for the starters; stop at the first failure.
failed=""
while ((${#STARTER_SVC[@]} > 0)); do
	done_pid=""
	rc=0
	if ((BASH_VERSINFO[0] > 5 || BASH_VERSINFO[1] >= 1)); then
		wait -n -p done_pid "${!STARTER_SVC[@]}" || rc=$?
	else # bash 5.0: no `wait -p`; wait in order (no fail-fast)
		for done_pid in "${!STARTER_SVC[@]}"; do break; done
		wait "$done_pid" || rc=$?
	fi
	if [[ -z ${done_pid-} ]]; then
		# `wait -n -p` leaves the variable unset when it returns without a
		# job: a trapped signal (go round again), or 127 when the jobs it was
		# given have already left bash's job table (a starter that ended
		# early; bash still has its status by PID): wait for one by PID.
		((rc == 127)) || continue
		for done_pid in "${!STARTER_SVC[@]}"; do break; done
		rc=0
		wait "$done_pid" || rc=$?
	fi
	svc=${STARTER_SVC[$done_pid]}
	unset "STARTER_SVC[$done_pid]"
	rm -f "$STATE/starter.$svc"
	if ((rc != 0)); then
		failed=$svc
		break
	fi
done
if [[ -n $failed ]]; then
	log "ERROR: could not provide service '$failed' (see above); not running: $*"
	exit 1
fi

for svc in "${services[@]}"; do
	# shellcheck disable=SC1090
	source "$STATE/$svc.env"
done
if [[ -n ${PORTAL_REQUIRE_SERVICES+x} ]]; then export PORTAL_REQUIRE_SERVICES; fi
cmdline="$*"
cmdline=${cmdline//$'\n'/ }
((${#cmdline} <= 120)) || cmdline="${cmdline:0:117}..."
log "services ready in $(since "$T0"); running: $cmdline"

# Run the command in the background so that signals sent to this script are
# handled at once (bash defers traps until a foreground child exits). Keep
# stdin, and undo the SIGINT/SIGQUIT ignoring bash applies to async commands.
if ((!INT_IGNORED)) && env --default-signal=INT,QUIT true 2>/dev/null; then
	env --default-signal=INT,QUIT "$@" <&0 &
else
	"$@" <&0 &
fi
CMD_PID=$!
printf '%s\n' "$CMD_PID" >"$STATE/cmd.pid"
# A trapped signal interrupts `wait` (status > 128, job not collected yet):
# wait again. Status 127 in a later round means the previous round already
# collected the exit status (the signal arrived just after the command ended).
rc=0
round=0
while :; do
	round=$((round + 1))
	INTERRUPTED=0
	r=0
	wait "$CMD_PID" || r=$?
	((round > 1 && r == 127)) && break
	rc=$r
	((INTERRUPTED)) || break
done
CMD_PID=""
exit "$rc"
