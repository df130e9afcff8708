/* fuzz-config.c - config_parse on any bytes, then config_wants on devices
 * made from each rule and a few fixed ones.  What must hold:
 *  1. no memory error or leak (ASan), whatever the text;
 *  2. a refused text leaves no rules and an ERR_CONFIG/ERR_NOMEM message
 *     naming the file;
 *  3. every rule's port prints back to a path that parses to it;
 *  4. the matching rule: a device a port/device line names is wanted or
 *     excluded, one an exclude line names is never wanted, hubs and VMs
 *     that are not ok are never wanted;
 *  5. a mapping line not yet resolved names a valid mapping id and
 *     matches nothing by itself.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "reconcile/config.h"
#include "reconcile/port.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
	if (!ok)
		abort();
}

static struct usbdev device_for(const struct rule *r)
{
	struct usbdev d = { 0 };

	if (r->kind == RULE_PORT) {
		d.port = r->port;
	} else {
		check(port_parse("1-1", &d.port));
		d.vid = r->vid;
		d.pid = r->pid;
		/* A serial rule names the device with that serial. */
		d.has_serial = r->serial[0] != '\0';
		d.serial_len = (uint16_t)strlen(r->serial);
		memcpy(d.serial, r->serial, d.serial_len + 1u);
	}
	return d;
}

static void rule_holds(const struct vm_config *vm, const struct rule *r)
{
	char text[PORT_STR_MAX];
	struct port back;
	struct usbdev d = device_for(r);
	bool excluded = false, wanted = config_wants(vm, &d, &excluded);

	check(r->line >= 1);
	if (r->kind == RULE_MAPPING) {
		check(mapping_id_valid(r->mapping));
		return;
	}
	if (r->kind == RULE_PORT)
		check(port_parse(port_format(&r->port, text, sizeof text), &back) &&
		      port_equal(&back, &r->port));
	check(r->exclude ? !wanted : wanted || excluded);
	check(!(wanted && excluded));
	d.hub = true, d.cls = 0x09;
	check(!config_wants(vm, &d, NULL));
}

static void fixed_devices(const struct vm_config *vm)
{
	static const char *const ports[] = { "1-1", "3-4.1.2", "10-1.12", "65535-255.255.255.255.255.255.255" };

	for (size_t i = 0; i < sizeof ports / sizeof ports[0]; i++) {
		struct usbdev d = { .vid = 0x046d, .pid = 0xc52b };
		bool excluded;
		check(port_parse(ports[i], &d.port));
		config_wants(vm, &d, &excluded);
		config_wants(vm, &d, NULL);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vm_config vm = { .vm = "fuzz" };
	struct err e = { 0 };

	if (!config_parse((const char *)data, size, "fuzz.usb.conf", &vm, &e)) {
		check(!vm.rules && vm.nrules == 0);
		check((e.kind == ERR_CONFIG || e.kind == ERR_NOMEM) &&
		      strncmp(e.msg, "fuzz.usb.conf:", 14) == 0);
		return 0;
	}
	check(vm.nrules <= CONFIG_RULES_MAX);
	for (size_t i = 0; i < vm.nrules; i++) {
		struct usbdev d = device_for(&vm.rules[i]);
		check(!config_wants(&vm, &d, NULL)); /* vm.ok is still false */
	}
	vm.ok = true;
	for (size_t i = 0; i < vm.nrules; i++)
		rule_holds(&vm, &vm.rules[i]);
	fixed_devices(&vm);
	free(vm.rules);
	return 0;
}
