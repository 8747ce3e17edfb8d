// The Prometheus text exposition format (version 0.0.4): a writer for
// /metrics, a strict parser that tests use to check what the writer made,
// and the standard process_* metrics read from /proc.
//
// The writer emits, per family, "# HELP" and "# TYPE" lines and then its
// samples; histograms as cumulative _bucket{le=...} series, _sum and _count.
// Label values and help text are escaped as the format requires.
//
// Thread-safety: TextWriter and Histogram are plain values (callers lock);
// the free functions are thread-safe.
#ifndef TANDEM_COMMON_PROMETHEUS_TEXT_H_
#define TANDEM_COMMON_PROMETHEUS_TEXT_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace tandem::prom {

// The content type of the text format, for the HTTP response.
inline constexpr char kContentType[] = "text/plain; version=0.0.4; charset=utf-8";

using Labels = std::vector<std::pair<std::string, std::string>>;

enum class MetricType { kCounter, kGauge, kHistogram };

std::string_view TypeName(MetricType type);

// Fixed upper bounds, ascending; the +Inf bucket is implicit.
class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);

  void Observe(double value);

  const std::vector<double>& upper_bounds() const { return upper_bounds_; }
  // Per bucket, not cumulative; one more than upper_bounds (the +Inf one).
  const std::vector<uint64_t>& bucket_counts() const { return counts_; }
  double sum() const { return sum_; }
  uint64_t count() const { return count_; }

 private:
  std::vector<double> upper_bounds_;
  std::vector<uint64_t> counts_;
  double sum_ = 0;
  uint64_t count_ = 0;
};

// Bounds in seconds for durations from 10 ms to about an hour.
std::vector<double> DurationBuckets();

class TextWriter {
 public:
  // Starts a family; the samples that follow belong to it. `name` must be a
  // valid metric name (counters end in _total, by convention).
  void Family(std::string_view name, MetricType type, std::string_view help);
  // One sample of the current counter or gauge family.
  void Sample(const Labels& labels, double value);
  // The series of one histogram of the current histogram family.
  void HistogramSample(const Labels& labels, const Histogram& histogram);

  const std::string& text() const { return out_; }
  std::string Take() { return std::move(out_); }

 private:
  void Line(std::string_view name, const Labels& labels, double value);

  std::string out_;
  std::string family_;
};

// A sample value as the format writes it: integers without a decimal point,
// others in the shortest form that reads back exactly; "+Inf", "-Inf", "NaN".
std::string FormatValue(double value);

// Escapes `\`, `"` and newlines in a label value.
std::string EscapeLabelValue(std::string_view value);

bool ValidMetricName(std::string_view name);
bool ValidLabelName(std::string_view name);

// ---- Strict parser.

struct ParsedSample {
  std::string name;
  Labels labels;  // in the order written
  double value = 0;
};

struct ParsedFamily {
  std::string name;
  std::string type;  // "counter", "gauge", "histogram", "summary", "untyped"
  std::string help;
  std::vector<ParsedSample> samples;
};

// Parses an exposition and checks it strictly; InvalidArgument naming the
// line for the first problem:
//   - every line ends with '\n'; names and label names are valid; label
//     values use only the escapes \\ \" \n; values parse;
//   - each family has exactly one HELP and one TYPE, before its samples,
//     and its samples are contiguous (a family never comes back later);
//   - each sample belongs to the family of the last TYPE (histograms:
//     name_bucket, name_sum, name_count);
//   - no series (name and label set) appears twice, no label twice;
//   - counters are named *_total and are never negative or NaN;
//   - histograms: every label set has buckets with increasing `le`, a +Inf
//     bucket, non-decreasing cumulative counts, and _count equal to the
//     +Inf bucket, and a _sum.
absl::StatusOr<std::vector<ParsedFamily>> ParseText(std::string_view text);

// The value of the sample `name` whose labels include every pair of
// `labels`; NotFound when there is none.
absl::StatusOr<double> FindValue(const std::vector<ParsedFamily>& families, std::string_view name,
                                 const Labels& labels = {});

// ---- Process metrics.

// process_cpu_seconds_total, process_resident_memory_bytes,
// process_virtual_memory_bytes, process_open_fds, process_max_fds,
// process_start_time_seconds (from /proc/self; a value that cannot be read
// is left out).
void AppendProcessMetrics(TextWriter* writer);

}  // namespace tandem::prom

#endif  // TANDEM_COMMON_PROMETHEUS_TEXT_H_
