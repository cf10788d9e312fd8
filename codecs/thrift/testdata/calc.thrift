// The IDL behind the golden frames of the Thrift codec's tests (see gen_golden.py). Its
// types cover every Thrift wire type the struct skipper has to walk past.

namespace py meltemi_golden

enum Op {
  ADD = 1,
  SUB = 2,
}

struct Inner {
  1: string name,
  2: list<i64> ids,
  3: map<string, double> weights,
  4: optional Inner child,
}

struct Work {
  1: i32 num1,
  2: i32 num2,
  3: Op op,
  4: optional string comment,
  5: bool flag,
  6: i8 b,
  7: i16 s,
  8: i64 l,
  9: double d,
  10: binary blob,
  11: list<string> tags,
  12: set<i32> nums,
  13: map<string, Inner> inners,
  14: list<list<i32>> matrix,
  15: list<bool> bools,
  16: map<i32, list<string>> mlist,
  17: set<binary> blobs,
  // A large field id: the compact protocol writes it in the long field-header form.
  300: i16 far,
}

exception CalcError {
  1: i32 code,
  2: string why,
}

service Calculator {
  void ping(),
  i32 calculate(1: i32 logid, 2: Work w) throws (1: CalcError ouch),
  oneway void zip(1: string note),
  string echo(1: string s),
}
