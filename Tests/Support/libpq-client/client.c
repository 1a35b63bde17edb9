/* A libpq client the tests drive line by line on stdin, so that sonde can attach
 * to it (--pid) before it sends anything. Each line is one call:
 *   exec SQL                 PQexec
 *   params SQL VALUE...      PQexecParams with text parameters
 *   prepare NAME SQL         PQprepare
 *   execute NAME VALUE...    PQexecPrepared
 * and is answered with one line: the result status name and the first value. */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_VALUES 8

static int split_values(char *rest, const char *values[MAX_VALUES])
{
	int count = 0;
	for (char *value = strtok(rest, " "); value && count < MAX_VALUES; value = strtok(NULL, " "))
		values[count++] = value;
	return count;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s CONNINFO\n", argv[0]);
		return 2;
	}
	PGconn *conn = PQconnectdb(argv[1]);
	if (PQstatus(conn) != CONNECTION_OK) {
		fprintf(stderr, "connection failed: %s", PQerrorMessage(conn));
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	char line[4096];
	while (fgets(line, sizeof(line), stdin)) {
		line[strcspn(line, "\n")] = 0;
		char *command = strtok(line, " ");
		char *rest = strtok(NULL, "");
		const char *values[MAX_VALUES];
		PGresult *result = NULL;
		if (!command || !rest) {
			fprintf(stderr, "bad line\n");
			return 2;
		} else if (strcmp(command, "exec") == 0) {
			result = PQexec(conn, rest);
		} else if (strcmp(command, "params") == 0) {
			/* The statement is everything up to " | "; the values follow. */
			char *bar = strstr(rest, " | ");
			int count = 0;
			if (bar) {
				*bar = 0;
				count = split_values(bar + 3, values);
			}
			result = PQexecParams(conn, rest, count, NULL, values, NULL, NULL, 0);
		} else if (strcmp(command, "prepare") == 0) {
			char *name = strtok(rest, " ");
			result = PQprepare(conn, name, strtok(NULL, ""), 0, NULL);
		} else if (strcmp(command, "execute") == 0) {
			char *name = strtok(rest, " ");
			char *more = strtok(NULL, "");
			int count = more ? split_values(more, values) : 0;
			result = PQexecPrepared(conn, name, count, values, NULL, NULL, 0);
		} else {
			fprintf(stderr, "unknown command %s\n", command);
			return 2;
		}
		const char *first = PQntuples(result) > 0 ? PQgetvalue(result, 0, 0) : "";
		printf("%s %s\n", PQresStatus(PQresultStatus(result)), first);
		fflush(stdout);
		PQclear(result);
	}
	PQfinish(conn);
	return 0;
}
