/* A shared object with thread-local storage, dlopened many times over by
 * tls_dlopen.c. */
__thread char buf[64];
__thread int counter;
int touch(int v) { counter += v; buf[v & 63] = (char)v; return counter; }
