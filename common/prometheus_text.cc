#include "common/prometheus_text.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>
#include <optional>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/files.h"

namespace tandem::prom {
namespace {

// Abseil here does not take std::string_view (see RECIPE pitfall 1).
absl::string_view Av(std::string_view s) { return absl::string_view(s.data(), s.size()); }

bool NameStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool NameChar(char c) { return NameStart(c) || (c >= '0' && c <= '9'); }

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::string EscapeHelp(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string LabelText(const Labels& labels) {
  if (labels.empty()) return "";
  std::vector<std::string> parts;
  parts.reserve(labels.size());
  for (const auto& [name, value] : labels) {
    parts.push_back(absl::StrCat(name, "=\"", EscapeLabelValue(value), "\""));
  }
  return absl::StrCat("{", absl::StrJoin(parts, ","), "}");
}

}  // namespace

std::string_view TypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

Histogram::Histogram(std::vector<double> upper_bounds)
    : upper_bounds_(std::move(upper_bounds)), counts_(upper_bounds_.size() + 1, 0) {}

void Histogram::Observe(double value) {
  const auto it = std::lower_bound(upper_bounds_.begin(), upper_bounds_.end(), value);
  ++counts_[static_cast<size_t>(it - upper_bounds_.begin())];
  sum_ += value;
  ++count_;
}

std::vector<double> DurationBuckets() {
  return {0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600};
}

void TextWriter::Family(std::string_view name, MetricType type, std::string_view help) {
  family_ = std::string(name);
  absl::StrAppend(&out_, "# HELP ", family_, " ", EscapeHelp(help), "\n", "# TYPE ", family_, " ",
                  Av(TypeName(type)), "\n");
}

void TextWriter::Line(std::string_view name, const Labels& labels, double value) {
  absl::StrAppend(&out_, Av(name), LabelText(labels), " ", FormatValue(value), "\n");
}

void TextWriter::Sample(const Labels& labels, double value) { Line(family_, labels, value); }

void TextWriter::HistogramSample(const Labels& labels, const Histogram& histogram) {
  const std::string bucket = absl::StrCat(family_, "_bucket");
  uint64_t cumulative = 0;
  const auto& bounds = histogram.upper_bounds();
  for (size_t i = 0; i <= bounds.size(); ++i) {
    cumulative += histogram.bucket_counts()[i];
    Labels with_le = labels;
    with_le.emplace_back("le", i < bounds.size() ? FormatValue(bounds[i]) : "+Inf");
    Line(bucket, with_le, static_cast<double>(cumulative));
  }
  Line(absl::StrCat(family_, "_sum"), labels, histogram.sum());
  Line(absl::StrCat(family_, "_count"), labels, static_cast<double>(histogram.count()));
}

std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == 0) return "0";
  if (value == std::floor(value) && std::fabs(value) < 1e15) return absl::StrFormat("%.0f", value);
  char buffer[64];
  const std::to_chars_result result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  return std::string(buffer, result.ptr);
}

std::string EscapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

bool ValidMetricName(std::string_view name) {
  if (name.empty() || !(NameStart(name[0]) || name[0] == ':')) return false;
  return std::all_of(name.begin(), name.end(), [](char c) { return NameChar(c) || c == ':'; });
}

bool ValidLabelName(std::string_view name) {
  if (name.empty() || !NameStart(name[0])) return false;
  if (name.substr(0, 2) == "__") return false;  // reserved for Prometheus itself
  return std::all_of(name.begin(), name.end(), NameChar);
}

// ------------------------------------------------------------------ Parser

namespace {

absl::Status LineError(size_t line_no, std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("metrics line ", line_no, ": ", Av(what)));
}

absl::StatusOr<double> ParseValue(std::string_view text) {
  if (text == "NaN") return std::nan("");
  if (text == "+Inf" || text == "Inf") return HUGE_VAL;
  if (text == "-Inf") return -HUGE_VAL;
  std::string_view digits = text;
  if (!digits.empty() && digits[0] == '+') digits.remove_prefix(1);
  double value = 0;
  const auto result = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (digits.empty() || result.ec != std::errc() || result.ptr != digits.data() + digits.size()) {
    return absl::InvalidArgumentError(absl::StrCat("bad value \"", Av(text), "\""));
  }
  return value;
}

std::string Canonical(std::string_view name, Labels labels) {
  std::sort(labels.begin(), labels.end());
  return absl::StrCat(Av(name), LabelText(labels));
}

// Parses `name{labels} value [timestamp]`.
absl::StatusOr<ParsedSample> ParseSampleLine(std::string_view line) {
  ParsedSample sample;
  size_t i = 0;
  while (i < line.size() && (NameChar(line[i]) || line[i] == ':')) ++i;
  sample.name = std::string(line.substr(0, i));
  if (!ValidMetricName(sample.name)) {
    return absl::InvalidArgumentError(absl::StrCat("bad metric name \"", sample.name, "\""));
  }
  std::set<std::string> seen;
  if (i < line.size() && line[i] == '{') {
    ++i;
    while (true) {
      if (i < line.size() && line[i] == '}') {
        ++i;
        break;
      }
      size_t start = i;
      while (i < line.size() && NameChar(line[i])) ++i;
      std::string label(line.substr(start, i - start));
      if (!ValidLabelName(label)) {
        return absl::InvalidArgumentError(absl::StrCat("bad label name \"", label, "\""));
      }
      if (!seen.insert(label).second) {
        return absl::InvalidArgumentError(absl::StrCat("label \"", label, "\" given twice"));
      }
      if (i + 1 >= line.size() || line[i] != '=' || line[i + 1] != '"') {
        return absl::InvalidArgumentError(absl::StrCat("label \"", label, "\" has no =\"value\""));
      }
      i += 2;
      std::string value;
      bool closed = false;
      while (i < line.size()) {
        char c = line[i++];
        if (c == '"') {
          closed = true;
          break;
        }
        if (c == '\\') {
          if (i >= line.size()) break;
          char e = line[i++];
          if (e == '\\') {
            value += '\\';
          } else if (e == '"') {
            value += '"';
          } else if (e == 'n') {
            value += '\n';
          } else {
            return absl::InvalidArgumentError(
                absl::StrCat("label \"", label, "\": bad escape \\", std::string(1, e)));
          }
        } else {
          value += c;
        }
      }
      if (!closed) {
        return absl::InvalidArgumentError(
            absl::StrCat("label \"", label, "\": unterminated value"));
      }
      sample.labels.emplace_back(std::move(label), std::move(value));
      if (i < line.size() && line[i] == ',') {
        ++i;
      } else if (i >= line.size() || line[i] != '}') {
        return absl::InvalidArgumentError("labels not closed by '}'");
      }
    }
  }
  if (i >= line.size() || line[i] != ' ') {
    return absl::InvalidArgumentError("no space before the value");
  }
  std::vector<absl::string_view> rest = absl::StrSplit(
      absl::string_view(line.data() + i + 1, line.size() - i - 1), ' ', absl::SkipEmpty());
  if (rest.empty() || rest.size() > 2) {
    return absl::InvalidArgumentError("want a value and an optional timestamp");
  }
  absl::StatusOr<double> value = ParseValue(std::string_view(rest[0].data(), rest[0].size()));
  if (!value.ok()) return value.status();
  sample.value = *value;
  if (rest.size() == 2) {
    int64_t timestamp = 0;
    if (!absl::SimpleAtoi(rest[1], &timestamp)) {
      return absl::InvalidArgumentError(absl::StrCat("bad timestamp \"", rest[1], "\""));
    }
  }
  return sample;
}

// Checks a finished family; `line_no` is where it ended.
absl::Status CheckFamily(const ParsedFamily& family, size_t line_no) {
  if (family.type.empty()) return LineError(line_no, absl::StrCat(family.name, " has no TYPE"));
  if (family.help.empty()) return LineError(line_no, absl::StrCat(family.name, " has no HELP"));
  if (family.type == "counter") {
    if (!EndsWith(family.name, "_total")) {
      return LineError(line_no, absl::StrCat("counter ", family.name, " is not named *_total"));
    }
    for (const ParsedSample& s : family.samples) {
      if (std::isnan(s.value) || s.value < 0) {
        return LineError(
            line_no, absl::StrCat("counter ", family.name, " has value ", FormatValue(s.value)));
      }
    }
  }
  if (family.type != "histogram") return absl::OkStatus();
  struct Series {
    std::vector<std::pair<double, double>> buckets;  // (le, cumulative count)
    std::optional<double> count;
    bool sum = false;
  };
  std::map<std::string, Series> series;
  for (const ParsedSample& s : family.samples) {
    Labels rest;
    std::optional<std::string> le;
    for (const auto& label : s.labels) {
      if (label.first == "le") {
        le = label.second;
      } else {
        rest.push_back(label);
      }
    }
    Series& one = series[Canonical("", rest)];
    if (s.name == family.name + "_bucket") {
      if (!le) return LineError(line_no, absl::StrCat(s.name, " without an le label"));
      absl::StatusOr<double> bound = ParseValue(*le);
      if (!bound.ok()) return LineError(line_no, absl::StrCat(s.name, ": le=\"", *le, "\""));
      if (!one.buckets.empty() && *bound <= one.buckets.back().first) {
        return LineError(line_no, absl::StrCat(s.name, ": le not increasing"));
      }
      if (!one.buckets.empty() && s.value < one.buckets.back().second) {
        return LineError(line_no, absl::StrCat(s.name, ": cumulative count decreases"));
      }
      one.buckets.emplace_back(*bound, s.value);
    } else if (le) {
      return LineError(line_no, absl::StrCat(s.name, " has an le label"));
    } else if (s.name == family.name + "_count") {
      one.count = s.value;
    } else if (s.name == family.name + "_sum") {
      one.sum = true;
    }
  }
  for (const auto& [labels, one] : series) {
    const std::string where = absl::StrCat(family.name, labels);
    if (one.buckets.empty() || !std::isinf(one.buckets.back().first)) {
      return LineError(line_no, absl::StrCat(where, " has no +Inf bucket"));
    }
    if (!one.count || *one.count != one.buckets.back().second) {
      return LineError(line_no, absl::StrCat(where, ": _count differs from the +Inf bucket"));
    }
    if (!one.sum) return LineError(line_no, absl::StrCat(where, " has no _sum"));
  }
  return absl::OkStatus();
}

bool BelongsTo(const ParsedFamily& family, std::string_view name) {
  if (name == family.name) return family.type != "histogram";
  if (family.type == "histogram") {
    return name == family.name + "_bucket" || name == family.name + "_sum" ||
           name == family.name + "_count";
  }
  if (family.type == "summary")
    return name == family.name + "_sum" || name == family.name + "_count";
  return false;
}

}  // namespace

absl::StatusOr<std::vector<ParsedFamily>> ParseText(std::string_view text) {
  std::vector<ParsedFamily> families;
  std::set<std::string> family_names;
  std::set<std::string> series;
  if (!text.empty() && text.back() != '\n') {
    return absl::InvalidArgumentError("metrics: the last line does not end with a newline");
  }
  size_t line_no = 0;
  size_t pos = 0;
  auto start_family = [&](const std::string& name) -> absl::Status {
    if (!families.empty() && families.back().name == name) return absl::OkStatus();
    if (!families.empty()) {
      if (absl::Status st = CheckFamily(families.back(), line_no); !st.ok()) return st;
    }
    if (!family_names.insert(name).second) {
      return LineError(line_no, absl::StrCat("family ", name, " appears a second time"));
    }
    families.push_back(ParsedFamily{name, "", "", {}});
    return absl::OkStatus();
  };
  while (pos < text.size()) {
    ++line_no;
    const size_t end = text.find('\n', pos);
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.empty()) continue;
    if (line[0] == '#') {
      std::vector<std::string_view> words;
      for (absl::string_view w :
           absl::StrSplit(absl::string_view(line.data(), line.size()), absl::MaxSplits(' ', 3))) {
        words.emplace_back(w.data(), w.size());
      }
      if (words.size() < 3 || words[0] != "#" || (words[1] != "HELP" && words[1] != "TYPE")) {
        continue;  // a plain comment
      }
      const std::string name(words[2]);
      if (!ValidMetricName(name))
        return LineError(line_no, absl::StrCat("bad name \"", name, "\""));
      if (absl::Status st = start_family(name); !st.ok()) return st;
      ParsedFamily& family = families.back();
      const std::string rest = words.size() > 3 ? std::string(words[3]) : "";
      if (words[1] == "HELP") {
        if (!family.help.empty()) return LineError(line_no, absl::StrCat("second HELP for ", name));
        if (rest.empty()) return LineError(line_no, absl::StrCat("empty HELP for ", name));
        family.help = rest;
      } else {
        if (!family.type.empty()) return LineError(line_no, absl::StrCat("second TYPE for ", name));
        if (!family.samples.empty()) {
          return LineError(line_no, absl::StrCat("TYPE for ", name, " after its samples"));
        }
        static const std::set<std::string> kTypes = {"counter", "gauge", "histogram", "summary",
                                                     "untyped"};
        if (kTypes.count(rest) == 0) {
          return LineError(line_no, absl::StrCat("unknown type \"", rest, "\""));
        }
        family.type = rest;
      }
      continue;
    }
    absl::StatusOr<ParsedSample> sample = ParseSampleLine(line);
    if (!sample.ok()) return LineError(line_no, std::string(sample.status().message()));
    if (families.empty() || families.back().type.empty() ||
        !BelongsTo(families.back(), sample->name)) {
      return LineError(line_no,
                       absl::StrCat("sample ", sample->name, " outside a family with its TYPE"));
    }
    if (!series.insert(Canonical(sample->name, sample->labels)).second) {
      return LineError(line_no, absl::StrCat("series ", Canonical(sample->name, sample->labels),
                                             " appears twice"));
    }
    families.back().samples.push_back(*std::move(sample));
  }
  if (!families.empty()) {
    if (absl::Status st = CheckFamily(families.back(), line_no); !st.ok()) return st;
  }
  return families;
}

absl::StatusOr<double> FindValue(const std::vector<ParsedFamily>& families, std::string_view name,
                                 const Labels& labels) {
  for (const ParsedFamily& family : families) {
    for (const ParsedSample& sample : family.samples) {
      if (sample.name != name) continue;
      const bool match = std::all_of(labels.begin(), labels.end(), [&](const auto& want) {
        return std::find(sample.labels.begin(), sample.labels.end(), want) != sample.labels.end();
      });
      if (match) return sample.value;
    }
  }
  return absl::NotFoundError(absl::StrCat("no sample ", Canonical(name, labels)));
}

// ----------------------------------------------------------------- Process

void AppendProcessMetrics(TextWriter* writer) {
  const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(::sysconf(_SC_PAGESIZE));
  absl::StatusOr<std::string> stat = ReadFile("/proc/self/stat");
  std::vector<std::string> fields;  // fields after "(comm)", starting with field 3 (state)
  if (stat.ok()) {
    if (const size_t paren = stat->rfind(')'); paren != std::string::npos) {
      fields = absl::StrSplit(stat->substr(paren + 2), ' ', absl::SkipEmpty());
    }
  }
  auto field = [&](size_t number) -> std::optional<double> {  // 1-based, as in proc(5)
    double value = 0;
    if (number < 3 || number - 3 >= fields.size() ||
        !absl::SimpleAtod(fields[number - 3], &value)) {
      return std::nullopt;
    }
    return value;
  };
  if (auto utime = field(14), stime = field(15); utime && stime && ticks > 0) {
    writer->Family("process_cpu_seconds_total", MetricType::kCounter,
                   "Total user and system CPU time spent in seconds.");
    writer->Sample({}, (*utime + *stime) / ticks);
  }
  if (auto rss = field(24)) {
    writer->Family("process_resident_memory_bytes", MetricType::kGauge,
                   "Resident memory size in bytes.");
    writer->Sample({}, *rss * page);
  }
  if (auto vsize = field(23)) {
    writer->Family("process_virtual_memory_bytes", MetricType::kGauge,
                   "Virtual memory size in bytes.");
    writer->Sample({}, *vsize);
  }
  if (DIR* dir = ::opendir("/proc/self/fd")) {
    double open = 0;
    while (const dirent* entry = ::readdir(dir)) {
      if (entry->d_name[0] != '.') ++open;
    }
    ::closedir(dir);
    writer->Family("process_open_fds", MetricType::kGauge, "Number of open file descriptors.");
    writer->Sample({}, open - 1);  // the directory stream's own descriptor
  }
  if (struct rlimit limit; ::getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    writer->Family("process_max_fds", MetricType::kGauge,
                   "Maximum number of open file descriptors.");
    writer->Sample(
        {}, limit.rlim_cur == RLIM_INFINITY ? HUGE_VAL : static_cast<double>(limit.rlim_cur));
  }
  absl::StatusOr<std::string> proc_stat = ReadFile("/proc/stat");
  if (auto start = field(22); start && proc_stat.ok() && ticks > 0) {
    for (absl::string_view line : absl::StrSplit(*proc_stat, '\n')) {
      double boot = 0;
      if (absl::ConsumePrefix(&line, "btime ") && absl::SimpleAtod(line, &boot)) {
        writer->Family("process_start_time_seconds", MetricType::kGauge,
                       "Start time of the process since unix epoch in seconds.");
        writer->Sample({}, boot + *start / ticks);
        break;
      }
    }
  }
}

}  // namespace tandem::prom
