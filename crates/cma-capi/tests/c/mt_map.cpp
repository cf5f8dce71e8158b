// A multi-threaded C++ program: eight std::threads build std::maps of
// strings, hand nodes to each other through a shared queue (so memory is
// freed by threads other than the one that allocated it), and merge the
// results. Prints a deterministic summary.
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

static std::mutex mu;
static std::vector<std::unique_ptr<std::map<int, std::string>>> handoff;

static unsigned long work(int id) {
    std::map<int, std::string> mine;
    unsigned long sum = 0;
    for (int round = 0; round < 40; round++) {
        auto m = std::make_unique<std::map<int, std::string>>();
        for (int i = 0; i < 500; i++) {
            int k = (i * 7919 + round * 104729 + id) % 100000;
            (*m)[k] = std::string(static_cast<size_t>(k % 61 + 1), static_cast<char>('a' + id));
        }
        std::unique_ptr<std::map<int, std::string>> other;
        {
            std::lock_guard<std::mutex> g(mu);
            handoff.push_back(std::move(m));
            if (handoff.size() > 4) {
                other = std::move(handoff.front());
                handoff.erase(handoff.begin());
            }
        }
        if (other) {
            for (auto &kv : *other) sum += kv.second.size() + static_cast<unsigned long>(kv.first);
        }
        mine[round] = std::to_string(sum);
    }
    return sum + mine.size();
}

int main() {
    unsigned long total = 0;
    for (int pass = 0; pass < 5; pass++) {
        std::vector<std::thread> threads;
        std::vector<unsigned long> results(8);
        for (int t = 0; t < 8; t++) threads.emplace_back([t, &results] { results[static_cast<size_t>(t)] = work(t); });
        for (auto &th : threads) th.join();
        for (auto r : results) total += r > 0;
    }
    unsigned long remaining = 0;
    for (auto &m : handoff) remaining += m->size();
    handoff.clear();
    std::printf("threads done: %lu, maps left: %lu entries\n", total, remaining);
    return 0;
}
