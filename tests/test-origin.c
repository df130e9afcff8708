/* test-origin.c - whether a device was hot-plugged (reconcile/origin.h),
 * against a scripted monitor and a real paused QEMU. */
#include <criterion/criterion.h>

#include <string.h>

#include "reconcile/origin.h"
#include "tests/helpers/fake-qmp.h"

TestSuite(origin, .init = fake_qmp_setup, .fini = fake_qmp_teardown, .timeout = 30);
TestSuite(qemu, .init = qemu_setup, .fini = qemu_teardown, .timeout = 60);

#define ASKED "{\"execute\":\"qom-get\",\"arguments\":{\"path\":\"/machine/peripheral/xhci\"," \
	"\"property\":\"hotplugged\"}"

/* One answer from the monitor, and what it means. */
struct reply_case {
	const char *name, *reply;
	bool ok, hotplugged;
	enum err_kind kind;
	const char *msg;
};

static const struct reply_case replies[] = {
	{ "true", RETURN("true"), true, true, ERR_NONE, NULL },
	{ "false", RETURN("false"), true, false, ERR_NONE, NULL },
	{ "a string", RETURN("\"true\""), false, false, ERR_PROTOCOL, "not a boolean" },
	{ "a number", RETURN("1"), false, false, ERR_PROTOCOL, "not a boolean" },
	{ "null", RETURN("null"), false, false, ERR_PROTOCOL, "not a boolean" },
	{ "no such device", ERROR("DeviceNotFound"), false, false, ERR_QMP,
	  "/machine/peripheral/xhci hotplugged" },
};

Test(origin, the_answer_is_a_boolean_and_anything_else_fails_the_command)
{
	for (size_t i = 0; i < sizeof replies / sizeof replies[0]; i++) {
		const struct reply_case *c = &replies[i];
		const struct reply_rule rules[] = { { ASKED, c->reply }, { NULL, NULL } };
		struct qmp_result res;
		struct err e = { 0 };
		bool hot = !c->hotplugged;

		serve_again(rules);
		struct qmp *q = start_ok();
		cr_assert(origin_queue(q, "xhci", &hot, &res), "%s", c->name);
		drive(q);
		cr_expect(qmp_ok(q, &e), "%s: the session stays usable: %s", c->name, e.msg);
		cr_expect(res.done, "%s", c->name);
		cr_expect_eq(res.ok, c->ok, "%s: %s", c->name, res.err.msg);
		if (c->ok)
			cr_expect_eq(hot, c->hotplugged, "%s", c->name);
		cr_expect_eq(res.err.kind, c->kind, "%s: %s", c->name, err_kind_name(res.err.kind));
		if (c->msg)
			cr_expect(strstr(res.err.msg, c->msg), "%s: %s", c->name, res.err.msg);
		close_and_check(q);
	}
}

Test(origin, an_id_that_is_not_a_qemu_id_is_refused_without_asking)
{
	static const struct step steps[] = {
		{ OP_SEND, GREETING, NULL },
		{ OP_REPLY, RETURN_EMPTY, "qmp_capabilities" },
		{ OP_HOLD, NULL, NULL },
		{ 0 },
	};
	static const char *const bad[] = { "", "1xhci", "x\"}", "a/b", "x y" };
	struct qmp_result res;
	bool hot;

	serve(steps, NULL);
	struct qmp *q = start_ok();
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		cr_expect_not(origin_queue(q, bad[i], &hot, &res), "'%s'", bad[i]);
		cr_expect(res.done && !res.ok, "'%s'", bad[i]);
		cr_expect(strstr(res.err.msg, "not a QEMU id"), "%s", res.err.msg);
	}
	drive(q);
	close_and_check(q);
	cr_expect_eq(srv.commands, 1, "only qmp_capabilities was sent");
}

/* QEMU 7.2 itself: its -device xhci is not hot-plugged, a device_add is
 * (a USB one: q35's pcie.0 takes no PCI hot-plug). */
Test(qemu, a_device_on_the_command_line_is_not_hotplugged_and_a_device_add_is)
{
	const struct qmp_call add = {
		.exec = "device_add",
		.args = "{\"driver\":\"usb-tablet\",\"id\":\"tablet\",\"bus\":\"xhci.0\"}",
	};
	struct qmp_result res[2];
	struct err e = { 0 };
	bool hot[2] = { true, false };
	struct qmp *q = qemu_open();

	cr_assert(qmp_execute(q, &add, "tablet", &e), "%s", e.msg);
	origin_queue(q, "xhci", &hot[0], &res[0]);
	origin_queue(q, "tablet", &hot[1], &res[1]);
	qmp_wait(q);
	cr_assert(res[0].ok && res[1].ok, "%s %s", res[0].err.msg, res[1].err.msg);
	cr_expect_not(hot[0], "-device qemu-xhci,id=xhci");
	cr_expect(hot[1], "device_add usb-tablet,id=tablet");
	qmp_close(q);
}
