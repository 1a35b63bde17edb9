// A C++ program with two instances of one function template, for function-name
// patterns: each line read ("int N" or "long N") doubles N through one instance.
#include <cstdio>
#include <cstdlib>

template <typename T>
__attribute__((noinline)) T twice(T value) {
    asm volatile("");  // keeps the instances apart (identical code could be folded)
    return value * 2;
}

int main() {
    setvbuf(stdout, nullptr, _IOLBF, 0);
    puts("ready");
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        if (line[0] == 'i')
            printf("%d\n", twice<int>(atoi(line + 4)));
        else
            printf("%ld\n", twice<long>(atol(line + 5)));
    }
}
