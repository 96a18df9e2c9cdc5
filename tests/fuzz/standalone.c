/* standalone: runs a libFuzzer target without libFuzzer, over every file
 * given on the command line (files or directories of files). make check
 * uses it to replay the seed corpus under ASan/UBSan on any compiler.
 * Every file is replayed in a child process, so one crashing seed is
 * reported by name and the others still run.
 * Each seed is replayed whole and cut at every length; targets whose one
 * input is a whole scenario (the session fuzzers) are built with
 * REPLAY_MAX_PREFIXES to replay only that many evenly spaced cuts. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef REPLAY_MAX_PREFIXES
#define REPLAY_MAX_PREFIXES 0	/* 0: every prefix */
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		return 1;
	}
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *buf = malloc((size_t)n + 1);
	size_t got = fread(buf, 1, (size_t)n, f);
	fclose(f);
	LLVMFuzzerTestOneInput(buf, got);
	/* Prefixes too: parsers must cope with input cut anywhere. */
	size_t step = 1, most = REPLAY_MAX_PREFIXES;
	if (most && got > most)
		step = got / most;
	for (size_t i = 0; i < got; i += step)
		LLVMFuzzerTestOneInput(buf, i);
	free(buf);
	return 0;
}

/* Each file in a child of its own: a crash names the file and the other
 * files are still replayed. */
static int run_file(const char *path)
{
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		return replay(path);
	}
	if (pid == 0)
		exit(replay(path));	/* exit: LeakSanitizer and coverage run at exit */
	int st = 0;
	if (waitpid(pid, &st, 0) < 0) {
		perror("waitpid");
		return 1;
	}
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	if (WIFSIGNALED(st))
		printf("FAILED: %s (signal %d)\n", path, WTERMSIG(st));
	else
		printf("FAILED: %s (exit %d)\n", path, WEXITSTATUS(st));
	return 1;
}

int main(int argc, char **argv)
{
	int rc = 0, files = 0;
	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st) < 0) {
			perror(argv[i]);
			return 1;
		}
		if (!S_ISDIR(st.st_mode)) {
			rc |= run_file(argv[i]);
			files++;
			continue;
		}
		DIR *d = opendir(argv[i]);
		struct dirent *e;
		while (d && (e = readdir(d))) {
			if (e->d_name[0] == '.')
				continue;
			char p[4096];
			snprintf(p, sizeof(p), "%s/%s", argv[i], e->d_name);
			rc |= run_file(p);
			files++;
		}
		if (d)
			closedir(d);
	}
	printf("%d input(s) replayed\n", files);
	return rc;
}
