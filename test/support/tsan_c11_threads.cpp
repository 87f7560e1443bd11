// ThreadSanitizer builds only: librdkafka starts its threads with C11 thrd_create, which glibc
// 2.34+ implements without going through the pthread_create symbol that TSan intercepts, so TSan
// does not know those threads and crashes in their first malloc. Defining thrd_create,
// thrd_join and thrd_detach here (the executable's definitions come first in symbol lookup)
// routes them through pthread_create, pthread_join and pthread_detach, which TSan sees.

#include <pthread.h>
#include <threads.h>

#include <cstdint>
#include <new>

namespace {

struct start {
    thrd_start_t func;
    void* arg;
};

void* trampoline(void* p) {
    const start s = *static_cast<start*>(p);
    delete static_cast<start*>(p);
    return reinterpret_cast<void*>(static_cast<std::intptr_t>(s.func(s.arg)));
}

}  // namespace

extern "C" int thrd_create(thrd_t* thr, thrd_start_t func, void* arg) {
    auto* s = new (std::nothrow) start{func, arg};
    if (!s)
        return thrd_nomem;
    if (pthread_create(thr, nullptr, trampoline, s) != 0) {
        delete s;
        return thrd_error;
    }
    return thrd_success;
}

extern "C" int thrd_join(thrd_t thr, int* res) {
    void* v = nullptr;
    if (pthread_join(thr, &v) != 0)
        return thrd_error;
    if (res)
        *res = static_cast<int>(reinterpret_cast<std::intptr_t>(v));
    return thrd_success;
}

extern "C" int thrd_detach(thrd_t thr) {
    return pthread_detach(thr) == 0 ? thrd_success : thrd_error;
}
