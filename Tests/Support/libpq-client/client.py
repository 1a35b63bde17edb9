"""A psycopg2 client the tests drive line by line on stdin, as the C client: psycopg2 sends
every statement through libpq's PQexec. Each line is `exec SQL` or `exec SQL | VALUE...`
(parameters psycopg2 interpolates into the text, client-side), answered with one line:
`ok FIRST-VALUE`, `ok STATUS-MESSAGE` or `error SQLSTATE`."""
import sys

import psycopg2

connection = psycopg2.connect(sys.argv[1])
connection.autocommit = True  # no BEGIN/COMMIT statements around each one
print("ready", flush=True)
for line in sys.stdin:
    command, _, rest = line.rstrip("\n").partition(" ")
    if command != "exec":
        sys.exit(f"unknown command {command}")
    statement, _, values = rest.partition(" | ")
    cursor = connection.cursor()
    try:
        cursor.execute(statement, [int(value) for value in values.split()] if values else None)
        print("ok", cursor.fetchone()[0] if cursor.description else cursor.statusmessage, flush=True)
    except psycopg2.Error as error:
        print("error", error.pgcode, flush=True)
