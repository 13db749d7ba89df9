# Helpers for the scripts tools/arm/boot runs on the board (it puts this file
# in /nltrace; a script sources it with `. ./board.sh`).

# attached FILE PID: wait until the agent has written its ready file (once
# every probe is attached) while it still runs (at most 300 s)
attached() {
    i=0
    while [ ! -e "$1" ]; do
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.2
        i=$((i + 1))
        [ $i -lt 1500 ] || return 1
    done
}
