// kvscope command line (subcommands are wired here as they land).
#include <cstdio>

int main(int argc, char** argv) {
    std::fprintf(stderr, "kvscope: no subcommand implemented yet\n");
    return 1;
}
